"""`pipeline status`: counts per state and failures with reasons, read from the checkpoints alone.

    doc = read_status("configs/catalog.yaml")   # the document `pipeline status --json` prints
    print(format_status(doc))
"""
from __future__ import annotations

import sqlite3
from collections import Counter

from pipeline.errors import CheckpointError
from pipeline.inputs.config import load_config
from pipeline.outputs.publish import checkpoint_paths, merged_rows
from pipeline.store.checkpoint import STATES

MAX_FAILURES_SHOWN = 50
# "new" is a pending (or uploaded) row no order was ever created for: nothing of it was paid for.
COUNTED = ("new", *STATES)


def read_status(config_path: str) -> dict:
    """What the checkpoints know (every shard's, summed, as `pipeline report` merges them), as plain
    data: checkpoint, counts, credits, failures, notes."""
    cfg = load_config(config_path)
    paths = checkpoint_paths(cfg)
    shown = str(paths[0]) if len(paths) == 1 else str(cfg.checkpoint_path) if not paths else \
        f"{len(paths)} under {cfg.state_root}"
    doc: dict = {"checkpoint": shown, "exists": bool(paths),
                 "counts": dict.fromkeys(("items", *COUNTED), 0), "credits": {"spent": 0},
                 "in_flight": 0, "failures": [], "notes": []}
    if not paths:
        return doc
    try:
        rows = merged_rows(paths)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {paths}: {exc}") from None
    counts = Counter("new" if r.never_ordered else str(r.state) for r in rows.values())
    doc["counts"] = {"items": len(rows), **{state: counts[state] for state in COUNTED}}
    doc["credits"] = {"spent": sum(r.credits for r in rows.values())}
    doc["in_flight"] = counts["submitted"] + counts["generated"]
    doc["failures"] = [{"id": r.id, "error": r.error or "no reason recorded"}
                       for r in sorted(rows.values(), key=lambda r: r.id) if r.state == "failed"]
    doc["notes"] = [{"id": r.id, "state": str(r.state), "error": r.error}
                    for r in sorted(rows.values(), key=lambda r: r.id)
                    if r.state not in ("done", "failed") and r.error]
    return doc


def format_status(doc: dict) -> str:
    """The human form of `read_status`'s document."""
    path = doc["checkpoint"]
    if not doc["exists"]:
        return f"no checkpoint yet at {path}: nothing has run"
    counts = doc["counts"]
    lines = [f"checkpoint: {path}", f"items: {counts['items']} · credits spent: {doc['credits']['spent']}"]
    lines += [f"  {state:<10} {counts[state]}" + ("  (never submitted)" if state == "new" else "")
              for state in COUNTED if counts[state]]
    if doc["in_flight"]:
        lines.append(f"orders in flight (collected by the next run): {doc['in_flight']}")
    failed = doc["failures"]
    if failed:
        lines.append("failures:")
        lines += [f"  {f['id']}: {f['error']}" for f in failed[:MAX_FAILURES_SHOWN]]
        if len(failed) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more (see results.csv)")
    notes = doc["notes"]
    if notes:
        lines.append("pending with a note:")
        lines += [f"  {n['id']} [{n['state']}]: {n['error']}" for n in notes[:MAX_FAILURES_SHOWN]]
    return "\n".join(lines)
