"""One run per checkpoint: a kernel file lock (filelock), released by the OS if the holder dies.

The holder writes who it is beside the lock, so a second run can name it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import CheckpointError, LockError


class RunLock:
    """``with RunLock(state_dir):`` holds the lock or raises LockError (exit 75) at once."""

    def __init__(self, state_dir: Path):
        self._dir = Path(state_dir)
        self._lock = FileLock(str(self._dir / "run.lock"), timeout=0)
        self._info = self._dir / "run.lock.json"

    def __enter__(self) -> "RunLock":
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            raise LockError(f"another run holds this checkpoint ({self._holder()}); "
                            "wait for it to finish") from None
        except OSError as exc:
            raise CheckpointError(f"cannot lock {self._dir}: {exc.strerror or exc}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            self._info.write_text(json.dumps(info))
        except OSError:
            pass  # naming the holder is a courtesy; the lock itself is what matters
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._info.unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()

    def _holder(self) -> str:
        try:
            info = json.loads(self._info.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"
