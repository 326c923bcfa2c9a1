"""`pipeline review`: the outputs held for their fidelity, and a reviewer's decisions on them.

    held = held_items(cfg)                                  # every shard's held items, read-only
    outcome = decide(cfg, approve=["sku-1"], reject=["sku-2"], reason="logo changed")

An approved item becomes `done`. A rejected one becomes `pending` with `review = "rejected"`: the
next `pipeline run` buys it once more (qa.max_rebuys per item), and nothing before then. Each
decision is kept on the item's row (review, review_reason, reviewed_at) and as a `runs` row of the
history (options.command = "review"), so `status` and the report show it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeline.errors import ConfigError
from pipeline.inputs.config import RunConfig
from pipeline.outputs.publish import checkpoint_paths, merged_rows
from pipeline.outputs.review_card import command
from pipeline.run.qa import heatmap_name
from pipeline.run.states import State
from pipeline.store import history
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.store.lock import RunLock
from pipeline.store.rowview import ReadView, RowView, rows_of
from pipeline.version import installed_version

APPROVED, REJECTED = "approved", "rejected"


@dataclass
class Outcome:
    approved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)   # each bought again by the next run: 1 credit


def held_rows(rows: dict[str, Row]) -> list[Row]:
    """The rows held for review, the least faithful first."""
    held = [r for r in rows.values() if r.state == State.REVIEW]
    return sorted(held, key=lambda r: (r.fidelity if r.fidelity is not None else 2.0, r.id))


def held_items(cfg: RunConfig) -> list[dict]:
    """Every held item of every checkpoint under state.dir, as `review --json` lists them: only the
    rows of ids some checkpoint holds for review are read (the newest of each wins), not every row."""
    paths = checkpoint_paths(cfg)
    with ReadView(paths) as view:
        candidates = view.ids_in_state(State.REVIEW)
    return [item_doc(cfg, row) for row in held_rows(merged_rows(paths, candidates) if candidates else {})]


def item_doc(cfg: RunConfig, row: Row) -> dict:
    return {"id": row.id, "fidelity": row.fidelity, "ssim": row.fidelity_ssim, "delta_e": row.fidelity_delta_e,
            "iou": row.fidelity_iou, "output_path": row.output_path,
            "heatmap": heatmap_name(row.output_sha256) if row.output_sha256 else None,
            "rebuys": row.rebuys or 0, "rebuys_left": max(0, cfg.qa.max_rebuys - (row.rebuys or 0)),
            "last_decision": row.review, "approve": command(cfg, "--approve", row.id),
            "reject": command(cfg, "--reject", row.id)}


def decide(cfg: RunConfig, *, approve: list[str] = (), reject: list[str] = (), reason: str | None = None,
           now: float | None = None) -> Outcome:
    """Apply the decisions in every checkpoint that holds the items, each under its run lock; all
    are checked first, and nothing is written when any is refused (ConfigError, one line each)."""
    if both := sorted(set(approve) & set(reject)):
        raise ConfigError([f"{i}: both --approve and --reject" for i in both])
    wanted = {**{i: APPROVED for i in approve}, **{i: REJECTED for i in reject}}
    paths = checkpoint_paths(cfg)
    rows = merged_rows(paths, list(wanted)) if paths else {}  # the decided items' rows alone
    problems = []
    for item_id, decision in wanted.items():
        row = rows.get(item_id)
        if row is None:
            problems.append(f"{item_id}: no such item in the checkpoint")
        elif row.state != State.REVIEW:
            problems.append(f"{item_id}: is {row.state}, not held for review")
        elif decision == REJECTED and (row.rebuys or 0) >= cfg.qa.max_rebuys:
            problems.append(f"{item_id}: bought again {row.rebuys} time(s) already (qa.max_rebuys "
                            f"{cfg.qa.max_rebuys}): approve it, or change its image or prompt")
    if problems:
        raise ConfigError(problems + ["nothing was decided"])
    now = time.time() if now is None else now
    outcome = Outcome()
    for path in paths:
        with RunLock(path.parent):
            ckpt = Checkpoint.open(path)
            try:
                mine = {i: r for i, r in rows_of(RowView(ckpt), wanted).items() if r.state == State.REVIEW}
                for item_id, row in sorted(mine.items()):
                    _apply(ckpt, row, wanted[item_id], reason, now)
                    (outcome.approved if wanted[item_id] == APPROVED else outcome.rejected).append(item_id)
                if mine:
                    _record(ckpt, mine, wanted, reason, now)
            finally:
                ckpt.close()
    return outcome


def _apply(ckpt: Checkpoint, row: Row, decision: str, reason: str | None, now: float) -> None:
    marks = {"review": decision, "review_reason": reason, "reviewed_at": now}
    if decision == APPROVED:
        ckpt.save(row, state=State.DONE, **marks)
    else:  # bought again by the next run; the held output stays on disk until the new one replaces it
        ckpt.save(row, state=State.PENDING, order_id=None, output_url=None, image_url=None, error=None,
                  failed_orders=0, polls=0, checked_at=None, seen_init_s=None, rebuys=(row.rebuys or 0) + 1,
                  **marks)


def _record(ckpt: Checkpoint, rows: dict[str, Row], wanted: dict[str, str], reason: str | None,
            now: float) -> None:
    """The decisions as one entry of the run history: no credit, no order."""
    options = {"command": "review", "reason": reason,
               "approved": sorted(i for i in rows if wanted[i] == APPROVED),
               "rejected": sorted(i for i in rows if wanted[i] == REJECTED)}
    run_id = ckpt.begin_run(started_at=now, version=installed_version(), options=options)
    assert run_id
    ckpt.end_run(exit_code=0, elapsed_s=0.0)
