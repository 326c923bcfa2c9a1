"""The distribution's name and installed version, at the bottom of the floors (the engine records it)."""
from __future__ import annotations

import functools

DISTRIBUTION = "lightx-pipeline"  # the name on the package index; the import package is `pipeline`


@functools.cache
def installed_version() -> str:
    """The installed distribution's version; read on first use: importlib.metadata costs ~60 ms of start-up."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
