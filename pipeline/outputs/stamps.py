"""A stamp: what a set of written files was made of, so a run whose inputs are unchanged skips making them.

    if not stamps.current(stamp, digest, paths):   # same digest, every file as it was left
        write them ...; stamps.save(stamp, digest, paths)

A stamp is only a shortcut: one that cannot be read or written means the files are made again.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pipeline.errors import OutputError
from pipeline.store.atomic import write_atomically


def current(stamp: Path, digest: str, paths: tuple[Path, ...]) -> bool:
    """Whether `stamp` records `digest` and every one of `paths` at the size and mtime it was left at."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        if recorded.get("digest") != digest or len(recorded["files"]) != len(paths):
            return False
        for path in paths:
            st = os.stat(path)
            if [st.st_size, st.st_mtime_ns] != recorded["files"].get(path.name):
                return False  # edited or replaced since: write it anew
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def save(stamp: Path, digest: str, paths: tuple[Path, ...]) -> None:
    """Record what the files were made of; never an error."""
    with contextlib.suppress(OSError, OutputError):
        files = {path.name: [(st := os.stat(path)).st_size, st.st_mtime_ns] for path in paths}
        write_atomically(stamp, json.dumps({"digest": digest, "files": files}).encode())
