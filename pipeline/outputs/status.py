"""`pipeline status`: counts per state and failures with reasons, read from the checkpoint alone."""
from __future__ import annotations

import sqlite3
from collections import Counter

from pipeline.outputs.publish import checkpoint_paths, merged_rows
from pipeline.store.checkpoint import STATES
from pipeline.inputs.config import load_config
from pipeline.errors import CheckpointError

MAX_FAILURES_SHOWN = 50


def format_status(config_path: str) -> str:
    """Counts over every shard's checkpoint (and an unsharded one), as `pipeline report` merges them."""
    cfg = load_config(config_path)
    paths = checkpoint_paths(cfg)
    if not paths:
        return f"no checkpoint yet at {cfg.checkpoint_path}: nothing has run"
    try:
        rows = merged_rows(paths)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {paths}: {exc}") from None
    path = paths[0] if len(paths) == 1 else f"{len(paths)} under {cfg.state_root}"
    counts = Counter(r.state for r in rows.values())
    lines = [f"checkpoint: {path}", f"items: {len(rows)} · credits spent: {sum(r.credits for r in rows.values())}"]
    lines += [f"  {state:<10} {counts[state]}" for state in STATES if counts[state]]
    waiting = [r for r in rows.values() if r.state == "submitted"]
    if waiting:
        lines.append(f"orders in flight (collected by the next run): {len(waiting)}")
    failed = sorted((r for r in rows.values() if r.state == "failed"), key=lambda r: r.id)
    if failed:
        lines.append("failures:")
        lines += [f"  {r.id}: {r.error or 'no reason recorded'}" for r in failed[:MAX_FAILURES_SHOWN]]
        if len(failed) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more (see results.csv)")
    if cfg.variants:  # one row per step of each (item, variant): its order and what it cost
        from pipeline.inputs.variants import step_id
        names = [(v.name, len(v.steps)) for v in cfg.variants]
        step_rows = sorted((r for r in rows.values() if r.id.count("/") >= 2
                            and any(r.id.endswith(step_id("", n, k)) for n, count in names for k in range(count))),
                           key=lambda r: r.id)
        lines.append(f"steps: {len(step_rows)} (id [state] order, credits)")
        lines += [f"  {r.id} [{r.state}] {r.order_id or '-'}, {r.credits} credit{'s' * (r.credits != 1)}"
                  for r in step_rows[:MAX_FAILURES_SHOWN]]
        if len(step_rows) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(step_rows) - MAX_FAILURES_SHOWN} more (in the checkpoint's items table)")
    notes = sorted((r for r in rows.values() if r.state not in ("done", "failed") and r.error),
                   key=lambda r: r.id)
    if notes:
        lines.append("pending with a note:")
        lines += [f"  {r.id} [{r.state}]: {r.error}" for r in notes[:MAX_FAILURES_SHOWN]]
    return "\n".join(lines)
