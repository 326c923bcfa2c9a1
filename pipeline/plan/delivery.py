"""Which files are delivered, and the disclosure each must carry: the same answer for the download
stage, the metadata pass of a rerun (`run/disclose.py`), renditions and `pipeline status`.

    for out in final_outputs(cfg, items, rows):
        out.name, out.row.output_sha256, disclosure_for(cfg, out.item, out.variant)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from pipeline.inputs.settings import RunConfig
from pipeline.inputs.template import Template
from pipeline.inputs.delivery import disclosure_of
from pipeline.inputs.manifest import Item
from pipeline.inputs.variants import IMPLICIT, Variant, step_id
from pipeline.lightx.tools import TOOLS
from pipeline.media.xmp import SOURCE_TYPES, Disclosure
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import batches

OFF_KEY = "off"


class Delivered(NamedTuple):
    """One delivered file: its name under output.dir, the checkpoint row that made it, its origin."""

    name: str
    row: Row
    item: Item
    variant: Variant | None  # None: the implicit variant of a config without `variants`


def final_outputs(cfg: RunConfig, items: list[Item], rows: dict[str, Row]) -> list[Delivered]:
    """Every done output of the current items: the row of each variant's last step, or the item's."""
    found = []
    for item in items:
        if not cfg.variants:
            row = rows.get(item.id)
            if row is not None and row.state == "done" and row.output_path == item.output_name:
                found.append(Delivered(item.output_name, row, item, None))
            continue
        for variant, name in zip(cfg.variants, item.output_names):
            row = rows.get(step_id(item.id, variant.name, len(variant.steps) - 1))
            if row is not None and row.state == "done" and row.output_path == name:
                found.append(Delivered(name, row, item, variant))
    return found


class Done(NamedTuple):
    """What the disclosure pass reads of a delivered file's row (Row's own names): no Row per item."""

    id: str
    output_sha256: str | None
    output_size: int | None
    output_mtime_ns: int | None


DONE_COLUMNS = ("state", "output_path", *Done._fields[1:])


def final_batches(cfg: RunConfig, items: list[Item], rows: Mapping[str, Row]) -> Iterator[list[Delivered]]:
    """`final_outputs` a batch of rows at a time, each `row` a `Done`: what a rerun checks of a million."""
    wanted = ((item.output_name, item.id, item, None) for item in items) if not cfg.variants else (
        (name, step_id(item.id, variant.name, len(variant.steps) - 1), item, variant)
        for item in items for variant, name in zip(cfg.variants, item.output_names))
    for chunk, found in batches(rows, list(wanted), DONE_COLUMNS, key=itemgetter(1)):
        yield [Delivered(name, Done(row_id, *values[2:]), item, variant) for name, row_id, item, variant in chunk
               if (values := found.get(row_id)) is not None and values[0] == "done" and values[1] == name]


def final_rows(cfg: RunConfig, rows: dict[str, Row]) -> list[Row]:
    """The rows of delivered files, without the manifest (`pipeline status`)."""
    if not cfg.variants:
        return [r for r in rows.values() if r.state == "done" and r.output_path]
    last = {f"/{v.name}/{len(v.steps)}" for v in cfg.variants}
    return [r for r in rows.values() if r.state == "done" and r.output_path
            and r.id.count("/") >= 2 and r.id[r.id.rindex("/", 0, r.id.rindex("/")):] in last]


def settings_key(cfg: RunConfig, variant: Variant | None) -> str:
    """The disclosure settings a file of this variant carries; the prompt's text is the fingerprint's."""
    settings = disclosure_of(cfg)
    if settings.off:
        return OFF_KEY
    system, version = _system(tuple(s.tool for s in (variant or IMPLICIT).steps))
    return f"{settings.source_type}|{settings.prompt}|{system}|{version}"


class SettingsKeys(dict):
    """settings_key per variant, each computed once (100k outputs share a handful): ``keys[variant]``."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg

    def __missing__(self, variant: Variant | None) -> str:
        self[variant] = key = settings_key(self.cfg, variant)
        return key


def variant_of(cfg: RunConfig, row_id: str) -> Variant | None:
    """The variant of a final step's row id (``sku-1/lifestyle/2``); None without variants."""
    if not cfg.variants:
        return None
    name = row_id.rsplit("/", 2)[-2]
    return next((v for v in cfg.variants if v.name == name), None)


def disclosure_for(cfg: RunConfig, item: Item, variant: Variant | None) -> Disclosure | None:
    """What a delivered picture of this item and variant carries; None with source_type off."""
    settings = disclosure_of(cfg)
    if settings.off:
        return None
    system, version = _system(tuple(s.tool for s in (variant or IMPLICIT).steps))
    prompt = (_prompt(item, variant) or None) if settings.prompt else None
    return Disclosure(SOURCE_TYPES + settings.source_type, system, version, prompt)


@lru_cache(maxsize=64)
def _system(tools: tuple[str, ...]) -> tuple[str, str]:
    """("LightX AI Background Generator, LightX AI Upscale", "v1, v2"): each tool once, in chain order."""
    names = dict.fromkeys(f"LightX AI {tool.replace('-', ' ').title()}" for tool in tools)
    versions = dict.fromkeys(TOOLS[tool].submit_path.split("/", 1)[0] for tool in tools)
    return ", ".join(names), ", ".join(versions)


def _prompt(item: Item, variant: Variant | None) -> str:
    """The prompt of the chain's last step that has one, filled from the item's columns."""
    if variant is None:
        return item.prompt
    cells = {**item.extra, "id": item.id, "image": item.image, "variant": variant.name}
    if item.prompt:
        cells["prompt"] = item.prompt
    for step in reversed(variant.steps):
        written = step.values.get("prompt")
        if isinstance(written, str):
            try:
                return Template.parse(written).fill(cells)
            except (KeyError, ValueError):
                return ""
    return ""
