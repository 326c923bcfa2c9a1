"""A variant's steps: what each one is (resolved from the item's columns), its fingerprint and its input.

    specs = resolve(variant, item, base, image_shas, cfg)     # every step's tool and values
    fp = fingerprint(previous_fp, input_sha256, spec)         # chained: a change re-buys what follows
    moved, write = unit.advance(rows)                         # after a step is done: the next one

A step is an ordinary checkpoint row (id ``{item}/{variant}/{step}``, steps counted from 1) going
through the usual states and stages; its job carries a ``StepSpec`` (tool, values). A step that is
not the last keeps its output in ``state_dir/steps/<sha256>``, the exact bytes received, and the next
step uploads those bytes. A step's fingerprint covers the previous step's fingerprint, its input's
sha256 (the source's for step 1), the tool and its values (an image field by its sha256), so a
change re-buys that step and what follows it, never what comes before it. The implicit variant of a
config without ``variants`` is one step whose row is ``{id}`` with today's fingerprint
(``planner.fingerprint``), and whose job carries no spec: nothing changes for it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.errors import ItemError
from pipeline.inputs.manifest import Item, resolve_image
from pipeline.inputs.locations import is_http_url
from pipeline.inputs.settings import RunConfig, Variant
from pipeline.inputs.template import Template
from pipeline.inputs.variants import step_id
from pipeline.lightx.tools import TOOLS, with_defaults
from pipeline.plan.decide import decide
from pipeline.plan.sources import file_sha256
from pipeline.run.stages.context import Job, StepSpec
from pipeline.run.states import State
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Row
from pipeline.store.names import STEPS_DIR
from pipeline.store.remote import Remote, StorageError

CHAIN = "lightx-chain-v1"  # bump when what a step asks the API for changes
WRITTEN = ("new", "changed", "retry", "repair", "forced", "restart")  # kinds whose row is written first
IN_FLIGHT = (State.SUBMITTED, State.GENERATED)


@dataclass(frozen=True)
class Where:
    """What deciding a row needs besides the row: the same for every unit of a run."""

    output_dir: Path | Mapping[str, int]  # or a storage URL's listing {name: size}
    api_id: str
    api_kind: str                  # "sandbox" or "lightx": part of every fingerprint
    state_dir: Path | None = None  # where steps not last keep their outputs (with variants)
    sandbox: bool = False
    force: bool = False
    only: frozenset[str] = frozenset()
    legacy_kind: str | None = None  # the base URL schema-1 checkpoints made real-API fingerprints with


@dataclass(eq=False, slots=True)
class Unit:
    """One (item, variant) still to drive: its resolved steps and the job of the step it is at.
    ``specs`` is ``(None,)`` for the implicit variant: one step, the item's own row."""

    item: Item
    variant: Variant | None        # None: the implicit variant
    output_name: str
    specs: tuple[StepSpec | None, ...]
    index: int
    job: Job
    where: Where

    @property
    def row(self) -> Row:
        return self.job.row

    @property
    def credits(self) -> int:
        """Credits this unit will spend from where it is, if every order succeeds first time."""
        steps = self.specs[self.index:]
        total = sum(1 if spec is None else spec.tool.credits for spec in steps)
        if self.row.state in IN_FLIGHT:  # its order exists: it may charge, but is not bought again
            total -= 1 if steps[0] is None else steps[0].tool.credits
        return total

    def advance(self, rows: Mapping[str, Row]) -> tuple[bool, Row | None]:
        """After the current step's job: move to the next step, decided as the plan decides every
        row. Returns (moved, the row to write before driving it, if any); not moved when the step is
        not done (failed, parked) or was the last."""
        done = self.job.row
        if done.state != State.DONE or self.index == len(self.specs) - 1:
            return False, None
        k = self.index + 1
        spec, input_sha = self.specs[k], done.output_sha256
        fp = fingerprint(done.fingerprint, input_sha, spec)
        old = rows.get(step_id(self.item.id, self.variant.name, k))
        item = step_item(self.item, k, spec, input_sha, old, self.where, self.output_name, self.variant.name)
        kind, row = decide_step(item, old, input_sha, fp, spec, self.where)
        self.index, self.job = k, Job(item, row, spec)
        return True, (row if kind in WRITTEN else None)


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
            field_ = tool.field(name)
            value = field_.check(written if isinstance(written, int) else Template.parse(written).fill(cells))
            if field_.is_image(value):
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


def decide_step(item: Item, row: Row | None, input_sha256: str, fp: str, spec: StepSpec,
                where: Where) -> tuple[str, Row]:
    """A step's row decided as every row is (plan/decide.py): against output.dir for the last step,
    state_dir/steps for the others."""
    out_dir = where.output_dir if spec.final else where.state_dir
    return decide(item, row, input_sha256, fp, out_dir if isinstance(out_dir, Mapping) else os.fspath(out_dir),
                  where.api_id, where.force, where.sandbox)
