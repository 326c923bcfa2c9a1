"""The run log: progress lines, warnings, errors and unexpected tracebacks of every run, in `state_dir/run.log`.

Rotated at RUN_LOG_BYTES, keeping RUN_LOG_KEEP old files. Nothing secret reaches it: every record
passes a filter that blanks the API key wherever it appears, arguments and tracebacks included.
"""
from __future__ import annotations

import contextlib
import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Iterable, Iterator

RUN_LOG = "run.log"
RUN_LOG_BYTES = 5 * 1024 * 1024
RUN_LOG_KEEP = 3
MASK = "[redacted]"


class Redact(logging.Filter):
    """Blank each secret in a record's final text (message, arguments and traceback)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        for secret in self._secrets:
            text, exc_text = text.replace(secret, MASK), exc_text.replace(secret, MASK)
        record.msg, record.args = text, None
        record.exc_text = exc_text or None
        return True


@contextlib.contextmanager
def run_log(state_dir: Path, *, secrets: Iterable[str | None] = ()) -> Iterator[Path]:
    """Log the `pipeline` package's INFO and up to `state_dir/run.log` while the block runs."""
    path = Path(state_dir) / RUN_LOG
    handler = RotatingFileHandler(path, maxBytes=RUN_LOG_BYTES, backupCount=RUN_LOG_KEEP, encoding="utf-8",
                                  delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(Redact(secrets))
    logger = logging.getLogger("pipeline")
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()
