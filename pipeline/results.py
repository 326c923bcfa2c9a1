"""The results table: one row per current manifest item, as CSV and Parquet, from the checkpoint."""
from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from pipeline.atomic import write_with
from pipeline.checkpoint import Row
from pipeline.config import RunConfig
from pipeline.manifest import Manifest

COLUMNS = ["id", "status", "image", "prompt", "order_id", "output_url", "output_path",
           "output_sha256", "error", "attempts", "credits", "submitted_at", "finished_at", "elapsed_s"]
STATUS = {"done": "done", "failed": "failed"}  # every other state is still `pending`


def status_of(row: Row | None) -> str:
    return STATUS.get(row.state, "pending") if row else "pending"


def status_counts(manifest: Manifest, rows: dict[str, Row]) -> Counter:
    counts = Counter({"done": 0, "failed": 0, "pending": 0})
    for item in manifest.items:
        counts[status_of(rows.get(item.id))] += 1
    counts["failed"] += len(manifest.invalid)
    return counts


def columns(manifest: Manifest, rows: dict[str, Row]) -> dict[str, list]:
    """The table as columns: one entry per current manifest item, invalid ones last, as failed."""
    found = [rows.get(item.id) for item in manifest.items]
    done = [r is not None and r.state == "done" for r in found]
    cols: dict[str, list] = {
        "id": [item.id for item in manifest.items],
        "status": [status_of(r) for r in found],
        "image": [item.image for item in manifest.items],
        "prompt": [item.prompt for item in manifest.items],
        "order_id": [r.order_id if r else None for r in found],
        "output_url": [r.output_url if r else None for r in found],
        "output_path": [r.output_path if ok else None for r, ok in zip(found, done)],
        "output_sha256": [r.output_sha256 if ok else None for r, ok in zip(found, done)],
        "error": [r.error if r and not ok else None for r, ok in zip(found, done)],
        "attempts": [r.attempts if r else 0 for r in found],
        "credits": [r.credits if r else 0 for r in found],
        "submitted_at": [_iso(r.submitted_at) if r else None for r in found],
        "finished_at": [_iso(r.finished_at) if r else None for r in found],
        "elapsed_s": [_elapsed(r) for r in found],
    }
    for name in manifest.columns:
        if name not in cols:
            cols[name] = [item.extra.get(name) for item in manifest.items]
    for bad in manifest.invalid:
        for name, values in cols.items():
            values.append({"id": bad.id, "status": "failed", "error": "; ".join(bad.problems),
                           "attempts": 0, "credits": 0}.get(name))
    return cols


def table(manifest: Manifest, rows: dict[str, Row]):
    """The results table as a pandas DataFrame."""
    import pandas as pd  # imported here: half a second that validate and status do not need
    return pd.DataFrame(columns(manifest, rows))


def write(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> Path:
    """Write results.csv and results.parquet under output.dir, each atomically; return the CSV path."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = columns(manifest, rows)
    types = {"attempts": pa.int64(), "credits": pa.int64(), "elapsed_s": pa.float64()}
    arrow = pa.table({name: pa.array(values, type=types.get(name, pa.string()))
                      for name, values in cols.items()})
    out = cfg.output.dir
    csv_path = out / "results.csv"
    write_with(csv_path, lambda p: _write_csv(cols, p))
    write_with(out / "results.parquet", lambda p: pq.write_table(arrow, p))
    return csv_path


def _write_csv(cols: dict[str, list], path: str) -> None:
    """Plain CSV, quoted only where needed (pyarrow's writer quotes every string)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        writer.writerows(zip(*cols.values()))


def _iso(ts: float | None) -> str | None:
    return _iso_second(int(ts)) if ts else None


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    """Cached: a big run finishes hundreds of items in the same second."""
    return datetime.fromtimestamp(second, timezone.utc).isoformat(timespec="seconds")


def _elapsed(row: Row | None) -> float | None:
    if not row or not row.finished_at or not row.submitted_at or row.state != "done":
        return None
    return round(row.finished_at - row.submitted_at, 3)
