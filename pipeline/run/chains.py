"""Variants run as chains of steps: one unit per (item, variant), one checkpoint row per step.

    the_plan = plan_units(cfg, manifest, items, rows, shas, where)   # in prepare, nothing written
    await drive(ctx, unit, drive_job)                                # in execute, step after step

A step is an ordinary checkpoint row (id ``{item}/{variant}/{step}``, steps counted from 1) going
through the usual states and stages; its job carries a ``StepSpec`` (tool, values). A step that is
not the last keeps its output in ``state_dir/steps/<sha256>``, the exact bytes received, and the next
step uploads those bytes. A step's fingerprint covers the previous step's fingerprint, its input's
sha256 (the source's for step 1), the tool and its values (an image field by its sha256), so a
change re-buys that step and what follows it, never what comes before it. A config without
``variants`` never comes here: its items keep today's rows and fingerprints.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Awaitable, Callable

from pipeline.errors import ItemError
from pipeline.inputs.config import RunConfig, Template
from pipeline.inputs.manifest import Item, Manifest, manifest_base, resolve_image
from pipeline.inputs.locations import is_http_url
from pipeline.inputs.variants import Variant, step_id
from pipeline.lightx.tools import TOOLS, with_defaults
from pipeline.plan.planner import INVALID_FINGERPRINT, Plan, decide
from pipeline.plan.sources import file_sha256
from pipeline.run.stages.context import Context, Job, StepSpec
from pipeline.run.stages.download import STEPS_DIR
from pipeline.run.states import State
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Row
from pipeline.store.remote import Remote, StorageError

CHAIN = "lightx-chain-v1"  # bump when what a step asks the API for changes
_WRITTEN = ("new", "changed", "retry", "repair", "forced", "restart")
_IN_FLIGHT = (State.SUBMITTED, State.GENERATED)


@dataclass(frozen=True)
class Where:
    """What deciding a step needs besides its row: the same for every unit of a run."""

    output_dir: Path | Mapping[str, int]  # or a storage URL's listing {name: size} (planner.plan)
    state_dir: Path
    api_id: str
    api_kind: str                  # "sandbox" or "lightx": part of step 1's fingerprint, as it is today
    sandbox: bool
    force: bool


@dataclass(eq=False)
class Unit:
    """One (item, variant): its resolved steps and the job of the step it is at."""

    item: Item
    variant: Variant
    output_name: str
    specs: tuple[StepSpec, ...]
    index: int
    job: Job
    where: Where

    @property
    def row(self) -> Row:
        return self.job.row


def fingerprint(previous: str, input_sha256: str, spec: StepSpec) -> str:
    values = {name: f"sha256:{spec.images[name][1]}" if name in spec.images else value
              for name, value in with_defaults(spec.tool, spec.values).items()}
    raw = json.dumps([CHAIN, previous, input_sha256, spec.tool.name, values], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def resolve(variant: Variant, item: Item, base: Path | str, shas: dict, cfg: RunConfig | None = None
            ) -> tuple[StepSpec, ...]:
    """Each step's values filled from the item's columns; image fields as (local path, sha256). An
    image in an object store (a URL, or a relative path beside a manifest in one) is read once and
    kept in state_dir/sources/<sha256>, as source images are."""
    cells = {**item.extra, "id": item.id, "image": item.image, "variant": variant.name}
    if item.prompt:
        cells["prompt"] = item.prompt
    specs = []
    for k, step in enumerate(variant.steps):
        tool = TOOLS[step.tool]
        values, images = {}, {}
        for name, written in step.fields:
            field = tool.field(name)
            value = field.check(written if isinstance(written, int) else Template.parse(written).fill(cells))
            if field.is_image(value):
                if is_http_url(value):
                    raise ItemError(f"variant {variant.name}, step {k + 1} ({tool.name}), {name}: an http(s) "
                                    f"image is not fetched yet; give a local path")
                located, url = resolve_image(base, value)
                if url is not None:
                    images[name] = _stored_image(url, shas, cfg)
                    values[name] = value
                    continue
                path = located
                if path not in shas:
                    try:
                        shas[path] = file_sha256(path)
                    except OSError as exc:
                        raise ItemError(f"cannot read image {value}: {exc.strerror or exc}") from None
                images[name] = (path, shas[path])
            values[name] = value
        specs.append(StepSpec(tool, values, images, final=k == len(variant.steps) - 1))
    return tuple(specs)


def _stored_image(url: str, shas: dict, cfg: RunConfig | None) -> tuple[Path, str]:
    """(local copy, sha256) of a step's image in an object store, read once per run."""
    if url not in shas:
        if cfg is None:
            raise ItemError(f"cannot read image {url}: no state directory to keep it in")
        try:
            data = Remote.open(url, cfg.storage.options, cfg.retries).read()
        except StorageError as exc:
            raise ItemError(f"cannot read image {exc}") from None
        sha = hashlib.sha256(data).hexdigest()
        path = cfg.state_dir / "sources" / sha
        if not path.exists():
            write_atomically(path, data)
        shas[url] = (path, sha)
    return shas[url]


def step_item(unit_item: Item, k: int, spec: StepSpec, input_sha256: str, row: Row | None, where: Where,
              output_name: str, variant: str) -> Item:
    """The Item a step's stages see: its own id, prompt, input file and output name."""
    later = {} if k == 0 else {"image_path": where.state_dir / STEPS_DIR / input_sha256, "image_url": None}
    name = output_name if spec.final else (row.output_path if row is not None and row.output_path else "")
    return replace(unit_item, id=step_id(unit_item.id, variant, k), prompt=str(spec.values.get("prompt", "")),
                   output_name=name, **later)


def _decide_step(item: Item, row: Row | None, input_sha256: str, fp: str, spec: StepSpec,
                 where: Where) -> tuple[str, Row]:
    out_dir = where.output_dir if spec.final else where.state_dir
    return decide(item, row, input_sha256, fp, out_dir if isinstance(out_dir, Mapping) else os.fspath(out_dir),
                  where.api_id, where.force, where.sandbox)


def plan_units(cfg: RunConfig, manifest: Manifest, items: list[Item], rows: dict[str, Row],
               shas: dict[str, str], where: Where, only: frozenset[str] = frozenset()) -> Plan:
    """Walk each unit's chain over the checkpoint: steps done and intact are kept; the first that is
    not is where the unit starts. Credits needed: every step from there (one in flight excepted)."""
    result = Plan()
    base = manifest_base(manifest.path)
    image_shas: dict = {}
    for item in items:
        if only and item.id not in only:
            continue
        for variant, output_name in zip(cfg.variants, item.output_names):
            try:
                specs = resolve(variant, item, base, image_shas, cfg)
            except (ItemError, ValueError, KeyError) as exc:
                result.counts["failed"] += 1
                first = step_id(item.id, variant.name, 0)
                if not (rows.get(first) and rows[first].state in _IN_FLIGHT):  # an order that may charge stays
                    result.writes.append(Row(id=first, fingerprint=INVALID_FINGERPRINT, state=State.FAILED,
                                             error=str(exc)))
                continue
            previous, input_sha = where.api_kind, shas[item.id]
            for k, spec in enumerate(specs):
                fp = fingerprint(previous, input_sha, spec)
                old = rows.get(step_id(item.id, variant.name, k))
                kind, row = _decide_step(step_item(item, k, spec, input_sha, old, where, output_name,
                                                   variant.name), old, input_sha, fp, spec, where)
                if kind != "unchanged" or spec.final:
                    break
                previous, input_sha = fp, row.output_sha256
            result.counts[kind] += 1
            if kind in _WRITTEN:
                result.writes.append(row)
            if kind == "unchanged":
                continue
            job = Job(step_item(item, k, spec, input_sha, row, where, output_name, variant.name), row, spec)
            result.units.append(Unit(item, variant, output_name, specs, k, job, where))
            in_flight = row.state in _IN_FLIGHT
            result.in_flight += in_flight
            result.chain_credits += sum(s.tool.credits for s in specs[k:]) - (spec.tool.credits if in_flight else 0)
    order = {State.GENERATED: 0, State.SUBMITTED: 1, State.UPLOADED: 2, State.PENDING: 3}
    result.units.sort(key=lambda unit: order.get(unit.row.state, 4))  # collect what is paid for first
    return result


async def drive(ctx: Context, unit: Unit, rows: dict[str, Row], drive_job: Callable[[Job], Awaitable[None]]) -> None:
    """Take one unit through its remaining steps; stops where a step is not done (failed, parked)."""
    while True:
        await drive_job(unit.job)
        done = unit.job.row
        if done.state != State.DONE or unit.index == len(unit.specs) - 1:
            return
        k = unit.index + 1
        spec, input_sha = unit.specs[k], done.output_sha256
        fp = fingerprint(done.fingerprint, input_sha, spec)
        old = rows.get(step_id(unit.item.id, unit.variant.name, k))
        item = step_item(unit.item, k, spec, input_sha, old, unit.where, unit.output_name, unit.variant.name)
        kind, row = _decide_step(item, old, input_sha, fp, spec, unit.where)
        if kind in _WRITTEN:
            ctx.ckpt.insert([row])
            rows[row.id] = row
        unit.index, unit.job = k, Job(item, row, spec)
