"""The distribution's name and version, at the bottom of the floors (the engine records it).

VERSION is the one place the version is written: pyproject.toml reads it from here (setuptools'
`attr:`, parsed without importing the package). A run reads it as a constant: asking
importlib.metadata cost 30-45 ms of every run's start-up.
"""
from __future__ import annotations

DISTRIBUTION = "lightx-pipeline"  # the name on the package index; the import package is `pipeline`
VERSION = "0.1.0"


def installed_version() -> str:
    """The distribution's version (the installed metadata says the same: tests/test_docs.py)."""
    return VERSION
