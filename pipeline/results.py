"""The results table: one row per current manifest item, as CSV and Parquet, from the checkpoint."""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pipeline.checkpoint import Row
from pipeline.config import RunConfig
from pipeline.errors import OutputError
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


def table(manifest: Manifest, rows: dict[str, Row]) -> pd.DataFrame:
    """One row per current manifest item (invalid ones included, as failed)."""
    records = []
    for item in manifest.items:
        row = rows.get(item.id)
        records.append({
            "id": item.id, "status": status_of(row), "image": item.image, "prompt": item.prompt,
            "order_id": row.order_id if row else None, "output_url": row.output_url if row else None,
            "output_path": row.output_path if row and row.state == "done" else None,
            "output_sha256": row.output_sha256 if row and row.state == "done" else None,
            "error": row.error if row and row.state != "done" else None,
            "attempts": row.attempts if row else 0, "credits": row.credits if row else 0,
            "submitted_at": _iso(row.submitted_at if row else None),
            "finished_at": _iso(row.finished_at if row else None),
            "elapsed_s": _elapsed(row), **item.extra,
        })
    for bad in manifest.invalid:
        records.append({"id": bad.id, "status": "failed", "error": "; ".join(bad.problems),
                        "attempts": 0, "credits": 0})
    frame = pd.DataFrame.from_records(records)
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame.reindex(columns=COLUMNS + extras)


def write(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> Path:
    """Write results.csv and results.parquet under output.dir, each atomically; return the CSV path."""
    frame = table(manifest, rows)
    out = cfg.output.dir
    csv_path = out / "results.csv"
    _atomic(csv_path, lambda p: frame.to_csv(p, index=False))
    _atomic(out / "results.parquet", lambda p: _to_parquet(frame, p))
    return csv_path


def _to_parquet(frame: pd.DataFrame, path: str) -> None:
    typed = frame.copy()
    for col in typed.columns:
        if col not in ("attempts", "credits", "elapsed_s"):
            typed[col] = typed[col].astype("string")
    typed.to_parquet(path, index=False)


def _atomic(target: Path, writer) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        os.close(fd)
        try:
            writer(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _elapsed(row: Row | None) -> float | None:
    if not row or not row.finished_at or not row.submitted_at or row.state != "done":
        return None
    return round(row.finished_at - row.submitted_at, 3)
