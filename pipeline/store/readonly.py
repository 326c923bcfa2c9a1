"""A checkpoint opened read-only, in one read transaction: `pipeline status`, the report, a shard's
siblings, and `tally` read checkpoints another run may be writing now (store/checkpoint.py writes)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.errors import CheckpointError

APPLICATION_ID = 0x4C58504C  # "LXPL": marks the file as ours, so a foreign SQLite file is refused


def read_only(path: Path, timeout_s: float, read, empty):
    """`read(conn, item columns)` on a checkpoint opened read-only; `empty` while it is being created."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    try:
        # One read transaction: read apart, the header and the tables could straddle the commit of the
        # run creating this checkpoint (no application id yet, its tables already there: "foreign").
        conn.execute("BEGIN")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        names = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
        if app_id == 0 and not names:
            return empty  # being created by its run this very moment
        if app_id != APPLICATION_ID:
            raise CheckpointError(f"{path} is not a pipeline checkpoint (a foreign SQLite file)")
        return read(conn, names)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    finally:
        conn.close()
