"""Every checkpoint under state.dir: the unsharded run's and each shard's (`shard-K-of-N/`).

    paths = checkpoint_paths(cfg.state_root)      # those that exist, unsharded first
    rows = merged_rows(paths)                      # read-only: shards may be running
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from pathlib import Path

from pipeline.store.checkpoint import Checkpoint, Row

CHECKPOINT_NAME = "checkpoint.sqlite"  # in each state directory
SHARD_DIR = re.compile(r"shard-(\d+)-of-(\d+)")


def checkpoint_paths(state_root: Path) -> list[Path]:
    """The unsharded checkpoint and every shard's, those that exist, unsharded first."""
    found = [state_root / CHECKPOINT_NAME] if (state_root / CHECKPOINT_NAME).exists() else []
    with contextlib.suppress(OSError):
        found += sorted(p / CHECKPOINT_NAME for p in state_root.iterdir()
                        if SHARD_DIR.fullmatch(p.name) and (p / CHECKPOINT_NAME).exists())
    return found


def merged_rows(paths: list[Path], ids: Collection[str] | None = None) -> dict[str, Row]:
    """Rows of several checkpoints (read-only: shards may be running), or only those of `ids`; for
    an item in several, the most recently updated row."""
    rows: dict[str, Row] = {}
    for path in paths:
        for item_id, row in Checkpoint.read_rows(path, ids=ids).items():
            old = rows.get(item_id)
            if old is None or (row.updated_at or 0) > (old.updated_at or 0):
                rows[item_id] = row
    return rows
