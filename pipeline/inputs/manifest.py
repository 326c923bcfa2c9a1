"""CSV/YAML manifest -> list[Item], validated at one boundary.

    >>> m = load_manifest(load_config("configs/catalog.yaml"))
    >>> m.items[0].id, m.items[0].prompt
    ('mug-01', 'a blue ceramic coffee mug on a white marble kitchen counter, soft natural light, ...')

Rows are numbered as a spreadsheet shows them: in a CSV the header is row 1 and the first item is
row 2 (a quoted cell spanning several lines still makes one row; blank lines count as rows and are
skipped). In a YAML manifest, item N is the Nth entry of ``items:``.

Prompt precedence, per item:
- the config sets no ``prompt``: the item's ``prompt`` column is the prompt;
- the config's ``prompt`` uses ``{prompt}``: the template always applies, ``{prompt}`` being the cell;
- otherwise the config's ``prompt`` (plain text or a template) is the default, and a non-empty
  ``prompt`` cell replaces it for that item.

``id`` and ``image`` cells are stripped of surrounding whitespace; other cells are kept as written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import ContextManager
from pathlib import Path

from pipeline.errors import ConfigError
# Building Items from rows is inputs/build.py's; Item and Manifest are inputs/items.py's; checks of local
# images live in inputs/local_images.py. They are named here too, where callers found them.
from pipeline.inputs.build import Sink, build, manifest_base, resolve_image  # noqa: F401
from pipeline.inputs.files import checked_local, display_path, read_text
from pipeline.inputs.items import RESERVED, InvalidItem, Item, Manifest  # noqa: F401
from pipeline.inputs.local_images import JPEG_EOI, image_problem  # noqa: F401
from pipeline.inputs import stores
from pipeline.inputs.readers import NONE, READERS, UNITS, Table, opened_csv, suffix
from pipeline.inputs.settings import RunConfig
from pipeline.inputs.template import Template


def load_manifest(cfg: RunConfig, keep: Callable[[str | None], bool] | None = None,
                  into: Sink | None = None) -> Manifest:
    """Read the manifest named by ``cfg``; file-level faults raise ConfigError, bad rows go to ``invalid``.

    ``keep`` (a shard's ``owns``) is applied while the rows stream: only the rows it keeps become
    Items or InvalidItems, so a shard holds its own share. The other rows are still read for what
    they share with these (an output file name), and the result is the whole manifest's, selected.
    ``into`` (not with ``keep``): receives the valid rows' Items, and stands for the list (build's)."""
    assert into is None or keep is None
    with _collector_paused():
        return _load(cfg, keep, into)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while the rows become Items: a million of them make no cycle,
    and each of its passes over the growing heap would cost a sixth of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _load(cfg: RunConfig, keep: Callable[[str | None], bool] | None, into: Sink | None) -> Manifest:
    """`load_manifest`'s work, done with the collector paused."""
    path = cfg.manifest_path
    shown = display_path(path)
    export = stores.open_store(path, shown, cfg.store.format, cfg.columns, cfg.storage.options)
    reader = READERS.get(suffix(path))
    if reader is None and export is None:
        raise ConfigError(f"{shown}: unknown manifest type {suffix(path)!r}; use .csv, .tsv, .xml, "
                          f".parquet, .jsonl, .yaml or .yml")
    try:
        prompt = Template.parse(cfg.prompt) if cfg.prompt is not None else None
        name = Template.parse(cfg.output.filename)
    except ValueError as exc:
        raise ConfigError(f"{display_path(cfg.config_path)}: {exc}") from None
    variants = tuple(v.name for v in cfg.variants)
    if export is not None:  # a store's own export, or a table `columns` maps (inputs/stores)
        def export_table() -> tuple[stores.StoreSummary, Table]:
            summary, rows = stores.read_rows(export, cfg.store.images, shown)
            return summary, Table(["id", "image", *export.columns, *stores.STORE_COLUMNS],
                                  ((row, cells, problems, NONE) for row, cells, problems in rows))
        summary, table = export_table()
        _columns_checked(table, prompt, name, path, cfg)
        manifest = build(table, prompt, name, path, shown, variants, keep, into)
        if manifest is None:  # a kept row may share its output file name with an earlier row not kept
            summary, table = export_table()
            manifest = _selected(build(table, prompt, name, path, shown, variants), keep)
        return dataclasses.replace(manifest, sha256=stores.digest(path, cfg.storage.options), store=summary)
    if reader is READERS[".csv"] and isinstance(path, Path):  # parsed from the file, never held whole
        sha256 = checked_local(path, shown, "manifest")
        opened: Callable[[], ContextManager[Table]] = lambda: opened_csv(path, shown)
    else:
        text = read_text(path, shown, "manifest", cfg.storage.options)
        sha256 = text_sha256(text)
        opened = lambda: contextlib.nullcontext(reader(text, shown))
    with opened() as table:
        _columns_checked(table, prompt, name, path, cfg)
        manifest = build(table, prompt, name, path, shown, variants, keep, into)
    if manifest is None:  # a kept row may share its output file name with an earlier row not kept
        with opened() as table:
            manifest = _selected(build(table, prompt, name, path, shown, variants), keep)
    return dataclasses.replace(manifest, sha256=sha256)


def _columns_checked(table: Table, prompt: Template | None, name: Template, path: Path, cfg: RunConfig) -> None:
    try:
        _check_columns(table.columns, prompt, name, path, cfg)
    except ConfigError:
        for _ in table.rows:
            pass  # a fault further down the file is said instead, as when every row was read first
        raise


def _selected(whole: Manifest | None, keep: Callable[[str | None], bool]) -> Manifest:
    assert whole is not None  # without `keep`, every row is built
    return dataclasses.replace(whole, items=[i for i in whole.items if keep(i.id)],
                               invalid=[b for b in whole.invalid if keep(b.id)])


def text_sha256(text: str) -> str:
    """sha256 of the UTF-8 bytes of ``text``, encoded a megabyte at a time (not a second copy of it)."""
    digest = hashlib.sha256()
    for start in range(0, len(text), 1 << 20):
        digest.update(text[start:start + (1 << 20)].encode())
    return digest.hexdigest()


def _check_columns(columns: list[str], prompt: Template | None, name: Template, path: Path,
                   cfg: RunConfig) -> None:
    """Columns every row needs (CSV only: a YAML item lacking one is reported on its own)."""
    problems = []
    shown = display_path(path)
    if UNITS.get(suffix(path), "row") == "row":
        problems += [f"{shown}: has no {col!r} column" for col in ("id", "image") if col not in columns]
        if prompt is None and "prompt" not in columns and not cfg.variants:
            problems.append(f"{shown}: has no 'prompt' column, and the config sets no prompt")
    config = display_path(cfg.config_path)
    # With variants, {variant} is the variant's name; without, it is a column like any other.
    own = ("id", "image", "variant") if cfg.variants else ("id", "image")
    if cfg.variants and "variant" in columns:
        problems.append(f"{shown}: has a 'variant' column, but with variants in the config {{variant}} is the "
                        f"variant's name; rename the column")
    for where, template in (("prompt", prompt), ("output.filename", name)):
        # id and image are required of every row; with no usable row at all, the rows say why.
        for missing in [f for f in (template.fields if template and columns else [])
                        if f not in columns and f not in own]:
            problems.append(f"{config}: {where} uses {{{missing}}}, but {shown} has no {missing!r} column "
                            f"(columns: {', '.join(columns)})")
    if problems:
        raise ConfigError(problems)


def check_images(items: Iterable[Item], seen: dict[Path, str | None] | None = None) -> dict[str, str]:
    """Item id -> one-line problem for local images that are missing, unreadable or not images.

    Only the header is read (``PIL.Image.open`` is lazy), once per distinct path. URLs are skipped:
    they are checked when fetched. ``seen``: {path: its problem or None} already found (and filled).
    """
    seen = {} if seen is None else seen
    problems = {}
    for item in items:
        path = item.image_path
        if path is None:
            continue
        if path not in seen:
            seen[path] = image_problem(path)
        if seen[path] is not None:
            problems[item.id] = f"image {item.image!r} {seen[path]}"
    return problems
