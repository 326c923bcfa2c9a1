"""The plan of one run, made before anything is sent: the one way from a manifest to what is bought.

    the_plan = make_plan(cfg, manifest, ckpt, where, outputs=store, listing=listing)
    ckpt.insert(the_plan.writes)       # run/engine.py, unless --dry-run; then drive the_plan.units

Down the floors: every source hashed (plan/sources), rows other state directories hold copied in
(plan/siblings), outputs a bucket holds adopted (plan/adopt), every (item, variant) decided
(plan/planner), unrunnable items recorded as failed. Nothing is written here.

An item whose source cannot be read this run (a CDN down, a file gone) is not bought; a done or held
one keeps its row and its delivered picture, so a rerun once the source is back buys nothing for it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from pipeline.inputs.manifest import Manifest, manifest_base
from pipeline.inputs.settings import RunConfig
from pipeline.plan.adopt import adopted_rows
from pipeline.plan.planner import Plan, failed_rows, plan
from pipeline.plan.siblings import sibling_rows
from pipeline.plan.sources import hash_sources
from pipeline.plan.steps import Where
from pipeline.run.states import State
from pipeline.store.checkpoint import Checkpoint
from pipeline.store.remote import Remote
from pipeline.store.rowview import RowView

log = logging.getLogger(__name__)


def make_plan(cfg: RunConfig, manifest: Manifest, ckpt: Checkpoint, where: Where, *,
              outputs: Remote | None = None, listing: dict[str, int] | None = None,
              before_deciding: Callable[[list, dict], None] | None = None) -> Plan:
    """Plan every runnable item against the checkpoint (and its siblings, and the bucket's outputs).
    `Plan.writes` holds every row to insert before driving: copied, adopted, decided, failed; its
    `rows` the checkpoint's rows with them applied (a store.rowview.RowView: read in batches, never
    all held). `before_deciding(items, rows)` is the caller's (run/engine: the done outputs'
    disclosure metadata, for 0 credits), once the rows are known."""
    shas, problems = asyncio.run(hash_sources(cfg, manifest.items, ckpt))
    items = [i for i in manifest.items if i.id not in problems]
    rows = RowView(ckpt)  # read in batches as asked: no Row per item of a no-op rerun
    kept = _delivered_before(problems, rows)
    copied = sibling_rows(cfg, rows, items)
    rows.update((row.id, row) for row in copied)
    if outputs is not None and not cfg.variants and not where.force:
        adopted = adopted_rows(cfg, items, rows, shas, listing, outputs, api_kind=where.api_kind)
        if adopted:
            log.info("adopted %d outputs already in %s: the checkpoint did not know them, their fingerprints "
                     "match", len(adopted), cfg.output_url)
        copied += adopted
        rows.update((row.id, row) for row in adopted)
    if before_deciding is not None:
        before_deciding(items, rows)
    if listing is not None:
        where = dataclasses.replace(where, output_dir=listing)
    the_plan = plan(items, rows, shas, where, cfg=cfg, base=manifest_base(manifest.path))
    reasons = [(b.id, "; ".join(b.problems)) for b in manifest.invalid] + [
        (item_id, why) for item_id, why in problems.items() if item_id not in kept]
    failed = failed_rows(reasons, {i.id for i in items}, rows)
    the_plan.writes = copied + the_plan.writes + failed
    rows.update((row.id, row) for row in the_plan.writes)
    the_plan.rows = rows
    the_plan.unreadable = {item_id: why + ("; its delivered picture is kept" if item_id in kept else "")
                           for item_id, why in problems.items()}
    return the_plan


def _delivered_before(problems: dict[str, str], rows: RowView) -> set[str]:
    """Items whose source cannot be read now but whose row is done or held: left as they are. Recorded
    as failed, a later run would buy them again once their source is back."""
    kept = {item_id for item_id in problems
            if item_id in rows and rows[item_id].state in (State.DONE, State.REVIEW)}
    if kept:
        log.warning("%d done items whose source cannot be read now keep their rows and pictures: nothing is "
                    "bought for them, and they are checked again next run", len(kept))
    return kept
