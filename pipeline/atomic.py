"""Files appear whole or not at all: write a temp file beside the target, then rename it into place."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from pipeline.errors import OutputError


def write_with(target: Path, writer: Callable[[str], None]) -> os.stat_result:
    """Let `writer(temp_path)` fill a temp file beside `target`, then rename it over `target`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        os.close(fd)
        try:
            writer(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for sharing
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target.stat()
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def write_atomically(target: Path, data: bytes) -> os.stat_result:
    """Write `data` to `target` whole."""
    return write_with(target, lambda tmp: Path(tmp).write_bytes(data))
