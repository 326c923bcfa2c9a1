"""Check a config, its manifest and every local image before anything is sent; summarise the plan.

    >>> cfg, manifest, plan = validate("configs/catalog.yaml")
    >>> print(format_plan(plan))
    10 items, 10 distinct images, 0 invalid
    a full run would spend 10 credits (1 per generated image; failed orders are free)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.inputs.config import RunConfig, load_config
from pipeline.inputs.manifest import InvalidItem, Manifest, load_manifest
from pipeline.inputs.manifest import check_images as _check_images


@dataclass
class Overview:
    """What a full run of the manifest would do, from the manifest alone (the planner, in plan/,
    compares it with the checkpoint)."""

    items: int            # valid items that a run would process
    invalid: int          # rows that cannot run (see problem_lines)
    distinct_images: int  # distinct local paths and URLs among the valid items
    credits: int          # credits a full run from scratch would spend: 1 per valid item


def validate(config_path: str | Path, *, env: Mapping[str, str] | None = None,
             check_images: bool = True) -> tuple[RunConfig, Manifest, Overview]:
    """Load config and manifest, check local images; file-level problems raise ConfigError.

    Items whose image is missing or unreadable move from ``manifest.items`` to ``manifest.invalid``.
    """
    cfg = load_config(config_path, env=env)
    manifest = load_manifest(cfg)
    if check_images and (problems := _check_images(manifest.items)):
        bad = [InvalidItem(item.id, item.row, [f"{manifest.where(item.row, item.id)}: {problems[item.id]}"])
               for item in manifest.items if item.id in problems]
        manifest = dataclasses.replace(
            manifest, items=[item for item in manifest.items if item.id not in problems],
            invalid=sorted([*manifest.invalid, *bad], key=lambda invalid: invalid.row))
    return cfg, manifest, plan_of(manifest)


def plan_of(manifest: Manifest) -> Overview:
    """Counts for ``format_plan``: every valid item is one generation, one credit."""
    images = {item.image_path or item.image_url for item in manifest.items}
    return Overview(items=len(manifest.items), invalid=len(manifest.invalid), distinct_images=len(images),
                credits=len(manifest.items))


def problem_lines(manifest: Manifest) -> list[str]:
    """Every problem of every invalid row, one line each, in manifest order."""
    return [line for invalid in manifest.invalid for line in invalid.problems]


def format_plan(plan: Overview) -> str:
    """A two-line human summary of what a run would do."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"
    return (f"{n(plan.items, 'item')}, {n(plan.distinct_images, 'distinct image')}, {plan.invalid} invalid\n"
            f"a full run would spend {n(plan.credits, 'credit')} "
            f"(1 per generated image; failed orders are free)")
