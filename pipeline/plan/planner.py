"""Decide, before anything is sent, what every (item, variant) needs: nothing, a resume, or orders.

    the_plan = plan(items, rows, shas, where, cfg=cfg, base=manifest_base(manifest.path))
    the_plan.units           # what run/ drives, paid-for work first
    the_plan.credits_needed  # what it spends if every order succeeds first time

One planner for every config: a config without ``variants`` is the one implicit variant with one
background-generator step, whose row keeps today's id (``{id}``) and fingerprint (the hash of the
image bytes, the final prompt and the API kind below), so a catalog finished by an older release
costs nothing. A variant's steps are chained (plan/steps.py). Nothing is written here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ItemError
from pipeline.inputs.manifest import Item
from pipeline.inputs.settings import RunConfig
from pipeline.inputs.variants import step_id
from pipeline.plan.decide import IDLE, KINDS, QUICK_COLUMNS, decide, quick_unchanged  # noqa: F401 - KINDS too
from pipeline.plan.steps import IN_FLIGHT, WRITTEN, Unit, Where, decide_step, fingerprint as step_fingerprint
from pipeline.plan.steps import resolve, step_item
from pipeline.run.stages.context import Job
from pipeline.run.states import State
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import batches

GENERATION = "lightx-bg-v1"  # bump when what we ask the API for changes
INVALID_FINGERPRINT = "invalid"
_FIRST = {State.GENERATED: 0, State.SUBMITTED: 1, State.UPLOADED: 2, State.PENDING: 3}  # paid-for work first


def fingerprint(image_sha256: str, prompt: str, api_kind: str) -> str:
    """An item's fingerprint without variants (its implicit variant's one step)."""
    raw = "\0".join((GENERATION, api_kind, image_sha256, prompt))
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Plan:
    """What a run will do; `counts` keys: KINDS, failed (a variant that cannot be resolved), and
    restart (a gone sandbox's orders; shown as resumable)."""

    units: list[Unit] = field(default_factory=list)       # every (item, variant) to drive, at its step
    writes: list[Row] = field(default_factory=list)       # rows to insert or replace before starting
    counts: Counter = field(default_factory=Counter)
    in_flight: int = 0                                    # orders already created that may charge
    rows: dict[str, Row] = field(default_factory=dict)    # the checkpoint's rows it was made over
    unreadable: dict[str, str] = field(default_factory=dict)  # id -> why its source cannot be read now

    @property
    def credits_needed(self) -> int:
        """Orders this run will create if every one succeeds first time."""
        return sum(unit.credits for unit in self.units)

    @property
    def jobs(self) -> list[tuple[Item, Row]]:
        """(item, row) of each unit's current step."""
        return [(unit.job.item, unit.job.row) for unit in self.units]

    def kinds(self) -> dict[str, int]:
        """Units per kind of KINDS, every kind present: what `--dry-run` shows."""
        shown = {kind: self.counts[kind] for kind in KINDS}
        shown["resumable"] += self.counts["restart"]
        return shown


def plan(items: list[Item], rows: Mapping[str, Row], shas: Mapping[str, str], where: Where, *,
         cfg: RunConfig | None = None, base: Path | str = ".") -> Plan:
    """Compare the manifest with the checkpoint, variant by variant and step by step.

    Steps done and intact are kept; the first that is not is where the unit starts. `cfg` gives
    the variants (none: the implicit one) and `base` the folder relative step images resolve in."""
    result = Plan()
    # plain strings: pathlib's joins cost more than the stat below
    where = dataclasses.replace(where, output_dir=where.output_dir if isinstance(where.output_dir, Mapping)
                                else os.fspath(where.output_dir))
    variants = cfg.variants if cfg is not None else ()
    image_shas: dict = {}
    if where.only:
        items = [item for item in items if item.id in where.only]
    if not variants:
        # A batch of rows at a time; a done row whose output is intact is decided from a few columns
        # and never becomes a Row (decide.quick_unchanged), so a no-op rerun holds no Row per item.
        for chunk, found in batches(rows, items, QUICK_COLUMNS):
            for item in chunk:
                sha = shas[item.id]
                fp = fingerprint(sha, item.prompt, where.api_kind)
                quick = found.get(item.id)
                if quick is not None and not where.force and quick_unchanged(quick, item.output_name, fp,
                                                                              where.output_dir):
                    result.counts["unchanged"] += 1
                else:  # no row in the batch's read: none at all, and no second query for it
                    _plan_item(result, item, None if quick is None else rows.get(item.id), sha, where, fp)
    for item in items if variants else ():
        for variant, output_name in zip(variants, item.output_names):
            _plan_variant(result, item, variant, output_name, rows, shas[item.id], where, image_shas, cfg, base)
    result.units.sort(key=lambda unit: _FIRST.get(unit.row.state, 4))
    return result


def _plan_item(result: Plan, item: Item, row: Row | None, sha: str, where: Where, fp: str) -> None:
    """The implicit variant: one step, the item's own `row` (None: it has none), today's fingerprint `fp`."""
    adopted = (row is not None and where.legacy_kind is not None and row.fingerprint != fp
               and row.fingerprint == fingerprint(sha, item.prompt, where.legacy_kind))
    if adopted:
        row = dataclasses.replace(row, fingerprint=fp)
    old = row
    kind, row = decide(item, row, sha, fp, where.output_dir, where.api_id, where.force, where.sandbox)
    result.counts[kind] += 1
    if adopted or row is not old or kind == "repair":  # a row made anew, or one moved back
        result.writes.append(row)
    if kind not in IDLE:
        _add(result, Unit(item, None, item.output_name, (None,), 0, Job(item, row), where))


def _plan_variant(result: Plan, item: Item, variant, output_name: str, rows: Mapping[str, Row], sha: str,
                  where: Where, image_shas: dict, cfg: RunConfig, base: Path | str) -> None:
    """One variant of one item: its chain walked over the checkpoint to the first step to run."""
    try:
        specs = resolve(variant, item, base, image_shas, cfg)
    except (ItemError, ValueError, KeyError) as exc:
        result.counts["failed"] += 1
        first = step_id(item.id, variant.name, 0)
        if not (rows.get(first) and rows[first].state in IN_FLIGHT):  # an order that may charge stays
            result.writes.append(Row(id=first, fingerprint=INVALID_FINGERPRINT, state=State.FAILED,
                                     error=str(exc)))
        return
    previous, input_sha = where.api_kind, sha
    for k, spec in enumerate(specs):
        fp = step_fingerprint(previous, input_sha, spec)
        old = rows.get(step_id(item.id, variant.name, k))
        step = step_item(item, k, spec, input_sha, old, where, output_name, variant.name)
        kind, row = decide_step(step, old, input_sha, fp, spec, where)
        if kind != "unchanged" or spec.final:
            break
        previous, input_sha = fp, row.output_sha256
    result.counts[kind] += 1
    if kind in WRITTEN:
        result.writes.append(row)
    if kind != "unchanged":
        _add(result, Unit(item, variant, output_name, specs, k, Job(step, row, spec), where))


def _add(result: Plan, unit: Unit) -> None:
    result.units.append(unit)
    result.in_flight += unit.row.state in IN_FLIGHT


def failed_rows(reasons: list[tuple[str | None, str]], valid_ids: set[str],
                rows: Mapping[str, Row]) -> list[Row]:
    """Rows recording items that cannot run (invalid, unreadable image) as failed, by (id, reason).

    Ids that cannot be stored (missing, repeated, or belonging to a valid item) are skipped; so is an
    item with an order that may still charge: it is collected once the item is valid again.
    """
    out: list[Row] = []
    seen = set(valid_ids)
    now = time.time()
    for item_id, reason in reasons:
        if not item_id or item_id in seen:
            continue
        seen.add(item_id)
        old = rows.get(item_id)
        if old and old.state in (State.SUBMITTED, State.GENERATED):
            continue
        out.append(Row(id=item_id, fingerprint=INVALID_FINGERPRINT, state=State.FAILED, error=reason,
                       created_at=old.created_at if old else None, finished_at=now))
    return out
