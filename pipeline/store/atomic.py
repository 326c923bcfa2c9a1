"""Files appear whole or not at all: write a temp file beside the target, then rename it into place.
And a file is read whole, or its first bytes, in three or four system calls (`read_file`).

Temp files are named `.part-<pid>-<n>` and created with O_EXCL, so two processes (or a stale file
left by a killed one) never share one. This costs four system calls per file (open, write, fstat,
rename) where tempfile.mkstemp plus a separate write cost a dozen; a catalog run writes one file
per item, so that difference showed in the benchmark.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Callable

from pipeline.errors import OutputError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_serial = itertools.count()


def _open_temp(directory: Path) -> tuple[int, str]:
    """Create and open a new temp file in `directory` (made if missing); its fd and path."""
    for _ in range(100):
        tmp = os.path.join(directory, f".part-{os.getpid()}-{next(_serial)}")
        try:
            # 0o644 before the umask: outputs are for sharing, as a plain `open` would make them.
            return os.open(tmp, _FLAGS, 0o644), tmp
        except FileExistsError:
            continue  # left by a killed process that had our pid: take the next number
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
    raise FileExistsError(f"no free temp name in {directory}")


def write_with(target: Path, writer: Callable[[str], None]) -> os.stat_result:
    """Let `writer(temp_path)` fill a temp file beside `target`, then rename it over `target`."""
    try:
        fd, tmp = _open_temp(target.parent)
        os.close(fd)
        try:
            writer(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return os.stat(target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def write_atomically(target: Path | str, data: bytes) -> os.stat_result:
    """Write `data` to `target` whole; the stat of the file now at `target`."""
    target = os.fspath(target)  # one item's output: plain strings, not pathlib, on this path (#21 §5)
    try:
        fd, tmp = _open_temp(os.path.dirname(target))
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                stat = os.fstat(fd)  # the rename below keeps size and mtime
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return stat
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def read_file(path: Path | str, limit: int | None = None) -> bytes:
    """The bytes of `path` (its first `limit` at most): open, fstat, read, close. `Path.read_bytes` and
    `open().read()` make eight calls for the same (a second fstat, lseeks, a terminal check), and a run
    reads each small source up to five times (#21 §5). Raises OSError as `open` does."""
    fd = os.open(path, READ_FLAGS)
    try:
        if limit is not None:
            return os.read(fd, limit)
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more: a file that grew since is read on to its end
        if len(data) == size:
            return data
        chunks = [data]  # it grew, or the read was short: read on to the end
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_stale_temps(directories) -> int:
    """Delete `.part-*` files that a killed run left in `directories`; how many went.

    Call only while holding the run lock: then no other writer of ours is alive to own them.
    """
    removed = 0
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                stale = [e.path for e in entries if e.name.startswith(".part-")]
        except OSError:
            continue  # missing or unreadable: nothing of ours to clean there
        for path in stale:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed += 1
    return removed
