"""Source copies that validation made of images in a bucket, so the run that follows reads them again 0 times.

    add_kept(source_dir, [(url, size, version, sha256), ...])   # inputs/stored.py, after a whole read
    kept = read_kept(source_dir)       # plan/sources.py: {url: (size, version, sha256)}, copy present
    drop_kept(source_dir)              # once the checkpoint's stat cache has them

Validation opens the checkpoint read-only (a run may hold its lock), so what it learnt while reading
a new image whole (its sha256, its copy in `<state.dir>/sources/<sha256>`) is kept beside the copies
in one small JSON file, written atomically. The run's hashing trusts an entry only while the
listing still shows the same size and version and the copy is there, moves the entries into the
stat cache and removes the file. Two validations at once may lose each other's entries: that costs
a read, never a wrong hash.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

from pipeline.store.atomic import write_atomically

KEPT_NAME = "validated.json"


def read_kept(source_dir: Path) -> dict[str, tuple[int, int, str]]:
    """{url: (size, version, sha256)} of the copies validation kept that are still in `source_dir`."""
    try:
        found = json.loads((source_dir / KEPT_NAME).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    kept = {}
    for url, entry in found.items():
        with contextlib.suppress(TypeError, ValueError):
            size, version, sha = entry
            if isinstance(sha, str) and len(sha) == 64 and (source_dir / sha).exists():
                kept[url] = (int(size), int(version), sha)
    return kept


def add_kept(source_dir: Path, entries: Iterable[tuple[str, int, int, str]]) -> None:
    """Record copies just written to `source_dir`; nothing is written when there are none."""
    entries = list(entries)
    if not entries:
        return
    kept = read_kept(source_dir)
    kept.update((url, (size, version, sha)) for url, size, version, sha in entries)
    write_atomically(source_dir / KEPT_NAME, json.dumps(kept, separators=(",", ":")).encode())


def drop_kept(source_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (source_dir / KEPT_NAME).unlink()
