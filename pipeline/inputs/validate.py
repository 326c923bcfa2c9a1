"""Check a config, its manifest and every local image before anything is sent; summarise the plan.

    >>> cfg, manifest, plan = validate("configs/catalog.yaml")
    >>> print(format_plan(plan))
    10 items, 10 distinct images, 0 invalid
    a full run would spend 10 credits (1 per generated image; failed orders are free)
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.errors import CheckpointError, ConfigError
from pipeline.inputs.config import RunConfig, check_config
from pipeline.inputs.local_images import image_problem
from pipeline.inputs.manifest import InvalidItem, Item, Manifest, load_manifest
from pipeline.inputs.stores import StoreSummary
from pipeline.inputs.manifest import check_images as _check_images
from pipeline.inputs.stored import check_stored_images
from pipeline.inputs.variants import item_problems, variants_of
from pipeline.media.images import image_header
from pipeline.store.checkpoint import Checkpoint
from pipeline.store.remote import is_remote
from pipeline.store.state_dirs import checkpoint_paths


@dataclass(frozen=True)
class Overview:
    """What a full run of the manifest would do, from the manifest alone (the planner, in plan/,
    compares it with the checkpoint)."""

    items: int            # valid items that a run would process
    invalid: int          # rows that cannot run (see problem_lines)
    distinct_images: int  # distinct local paths and URLs among the valid items
    credits: int          # credits a full run from scratch would spend: 1 per step of each variant of a valid item
    per_item: tuple[tuple[str, int], ...] = ()  # with variants: (name, credits per item) of each
    problems: tuple[str, ...] = ()  # one line per problem of the invalid rows (`pipeline.validate` fills it)
    warnings: tuple[str, ...] = ()  # what is allowed but unwise, e.g. output.disclosure off (the same)
    store: StoreSummary | None = None  # a store export: format, products, pictures, products without a picture


def validate(config_path: str | Path, *, env: Mapping[str, str] | None = None, check_images: bool = True,
             keep: Callable[[str | None], bool] | None = None) -> tuple[RunConfig, Manifest, Overview]:
    """Load config and manifest, check local images; file-level problems raise ConfigError.

    Items whose image is missing or unreadable, or whose variants cannot be made (a step's field,
    an image too large for upscale), move from ``manifest.items`` to ``manifest.invalid``.
    A config problem raises with the manifest's problems too, when the config says where it is.
    ``keep`` (a shard's ``owns``): only the rows it keeps are held, and only their images checked.
    """
    cfg = _config(config_path, env, check_images)
    manifest = load_checked(cfg, check_images, keep)
    return cfg, manifest, plan_of(manifest, cfg)


def overview(config_path: str | Path, *, env: Mapping[str, str] | None = None) -> tuple[RunConfig, Overview]:
    """`validate`'s Overview, with every problem line in ``problems``, without holding the manifest:
    what `pipeline validate` prints. Each valid row is counted as it is built and dropped; only the
    rows whose image is still to be checked (in a bucket, or local and bad) are kept. A million rows
    of a store's catalog took 698 MB as Items, for two counts (#21 §1). With variants, whose checks
    need every item, this is `validate`'s own work."""
    cfg = _config(config_path, env)
    if cfg.variants:
        manifest = load_checked(cfg)
        return cfg, dataclasses.replace(plan_of(manifest, cfg), problems=tuple(problem_lines(manifest)))
    counted = Counted()
    manifest = load_manifest(cfg, into=counted)
    held = counted.held
    problems = _check_images(held, counted.checked)  # every path already checked: no image read again
    stored, _ = check_stored_images(held, cfg.storage.options, _seen(cfg, held), keep=cfg.state_dir / "sources",
                                    retries=cfg.retries)
    problems.update(stored)
    invalid = _with_invalid(manifest, held, problems)
    valid = [item for item in held if item.id not in problems]
    items = counted.good + len(valid)
    return cfg, Overview(items=items, invalid=len(invalid), credits=items * sum(v.credits() for v in variants_of(cfg)),
                         distinct_images=len(counted.images) + len({item.image_url for item in valid}),
                         store=manifest.store, problems=tuple(line for row in invalid for line in row.problems))


class Counted:
    """A manifest's valid rows as `overview` takes them from `build`: how many are good (a local image
    that reads, or an http(s) URL, which validation never fetches), their distinct images, and the Items
    whose image is still to be checked (in a bucket, or local and bad). Each local image is checked
    once, as `check_images` does; the others' Items are dropped."""

    wants_cells = False  # no check of `overview`'s reads another cell

    def __init__(self) -> None:
        self.good = 0
        self.images: set[Path | str] = set()
        self.held: list[Item] = []
        self.checked: dict[Path, str | None] = {}  # each local image's problem, or None: check_images's `seen`

    def append(self, item: Item) -> None:
        path = item.image_path
        if path is not None:
            if path not in self.checked:
                self.checked[path] = problem = image_problem(path)
                if problem is None:
                    self.images.add(path)
            if self.checked[path] is None:
                self.good += 1
                return
        elif not is_remote(url := item.image_url or ""):  # http(s): checked when fetched, not here
            self.good += 1
            self.images.add(url)
            return
        self.held.append(item)


def _config(config_path: str | Path, env: Mapping[str, str] | None, check_images: bool = True) -> RunConfig:
    """The checked config; its problems raise, with the manifest's when the config says where it is."""
    cfg, problems = check_config(config_path, env=env)
    if problems:
        if cfg is not None:
            try:
                problems += problem_lines(load_checked(cfg, check_images))
            except ConfigError as exc:
                problems += exc.problems
        raise ConfigError(problems)
    return cfg


def load_checked(cfg: RunConfig, check_images: bool = True,
                 keep: Callable[[str | None], bool] | None = None) -> Manifest:
    """The manifest, with items whose local image is missing or unreadable, or whose variants cannot be
    made, moved to ``invalid``."""
    manifest = load_manifest(cfg, keep)
    stored_sizes: dict[str, tuple[int, int]] = {}
    if check_images:
        problems = _check_images(manifest.items)
        stored, stored_sizes = check_stored_images(manifest.items, cfg.storage.options, _seen(cfg, manifest.items),
                                                   sizes_needed=bool(cfg.variants), keep=cfg.state_dir / "sources",
                                                   retries=cfg.retries)
        problems.update(stored)
    if check_images and problems:
        manifest = dataclasses.replace(
            manifest, items=[item for item in manifest.items if item.id not in problems],
            invalid=_with_invalid(manifest, manifest.items, problems))
    if check_images and cfg.variants:
        manifest = _check_variants(cfg, manifest, stored_sizes)
    return manifest


def _with_invalid(manifest: Manifest, items: Iterable[Item], problems: Mapping[str, str]) -> list[InvalidItem]:
    """The manifest's invalid rows and the items ``problems`` names ({id: problem}), in row order."""
    bad = [InvalidItem(item.id, item.row, [f"{manifest.where(item.row, item.id)}: {problems[item.id]}"])
           for item in items if item.id in problems]
    return sorted([*manifest.invalid, *bad], key=lambda invalid: invalid.row)


def _seen(cfg: RunConfig, items: Iterable[Item]) -> dict[str, tuple[int, int, str]]:
    """The stat caches of every checkpoint under state.dir (read-only): stored images earlier runs read."""
    if not any(item.image_url and is_remote(item.image_url) for item in items):
        return {}
    seen: dict[str, tuple[int, int, str]] = {}
    for path in checkpoint_paths(cfg.state_root):
        with contextlib.suppress(CheckpointError):  # a damaged checkpoint only costs the reads it would save
            seen.update(Checkpoint.read_file_hashes(path))
    return seen


def _check_variants(cfg: RunConfig, manifest: Manifest, stored_sizes: dict[str, tuple[int, int]]) -> Manifest:
    """Every step of every variant checked for every item; a column a step needs is a file-level problem."""
    sizes: dict = {item.image_path: _size(item.image_path) for item in manifest.items if item.image_path is not None}
    sizes.update(stored_sizes)
    file_level, problems = item_problems(cfg, manifest, sizes)
    if file_level:
        raise ConfigError(file_level + problem_lines(manifest))
    if not problems:
        return manifest
    bad = [InvalidItem(item.id, item.row, problems[item.id]) for item in manifest.items if item.id in problems]
    return dataclasses.replace(
        manifest, items=[item for item in manifest.items if item.id not in problems],
        invalid=sorted([*manifest.invalid, *bad], key=lambda invalid: invalid.row))


def _size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image's header, as stored (EXIF rotation does not change the longer side)."""
    if header := image_header(path):
        return header[1], header[2]
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # check_images has said why


def plan_of(manifest: Manifest, cfg: RunConfig | None = None) -> Overview:
    """Counts for ``format_plan``: every step of every variant of a valid item is one order, one credit."""
    images = {item.image_path or item.image_url for item in manifest.items}
    per_item = tuple((v.name, v.credits()) for v in cfg.variants) if cfg is not None else ()
    credits = len(manifest.items) * sum(v.credits() for v in variants_of(cfg)) if cfg is not None \
        else len(manifest.items)
    return Overview(items=len(manifest.items), invalid=len(manifest.invalid), distinct_images=len(images),
                credits=credits, per_item=per_item, store=manifest.store)


def problem_lines(manifest: Manifest) -> list[str]:
    """Every problem of every invalid row, one line each, in manifest order."""
    return [line for invalid in manifest.invalid for line in invalid.problems]


def format_plan(plan: Overview) -> str:
    """A two-line human summary of what a run would do."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"
    why = "1 per generated image"
    if plan.per_item:
        why = "per item: " + ", ".join(f"{name} {n(credits, 'step')}" for name, credits in plan.per_item) \
            + "; 1 credit per step"
    store = plan.store.lines() if plan.store is not None else []
    return "".join(line + "\n" for line in store) + (f"{n(plan.items, 'item')}, {n(plan.distinct_images, 'distinct image')}, {plan.invalid} invalid\n"
            f"a full run would spend {n(plan.credits, 'credit')} "
            f"({why}; failed orders are free)")
