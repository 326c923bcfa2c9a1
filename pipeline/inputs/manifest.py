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

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.inputs.files import display_path, read_text
# Checks of local images live in inputs/local_images.py; they are named here too, where callers found them.
from pipeline.inputs.local_images import JPEG_EOI, image_problem, jpeg_end_problem  # noqa: F401
from pipeline.inputs.locations import is_http_url
from pipeline.inputs import stores
from pipeline.inputs.readers import READERS, UNITS, Table, suffix
from pipeline.inputs.schema import describe, schema_checker
from pipeline.inputs.settings import RunConfig
from pipeline.inputs.template import Template, output_name_problem
from pipeline.store import remote

RESERVED = ("id", "image", "prompt")


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    image: str                      # as written in the manifest
    prompt: str                     # final prompt, template already filled
    row: int                        # CSV: spreadsheet row (header is row 1); YAML: 1-based index in items
    image_path: Path | None = None  # resolved local path, or None for a URL
    image_url: str | None = None    # http(s) or storage URL (s3://...), or None for a local file
    output_name: str = ""           # file name relative to output.dir (with variants: the first variant's)
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    output_names: tuple[str, ...] = ()  # with variants: one file name per variant, in config order


@dataclass(frozen=True)
class InvalidItem:
    """A row that cannot run; ``problems`` are full one-line messages naming file, row and field."""
    id: str | None
    row: int
    problems: list[str]


@dataclass(frozen=True)
class Manifest:
    items: list[Item]
    invalid: list[InvalidItem]
    columns: list[str]
    path: Path | str | None = None  # a str is a storage URL
    sha256: str | None = None       # of the manifest text these items were read from
    store: stores.StoreSummary | None = None  # a store export: its format, products, products without a picture

    def where(self, row: int, item_id: str | None) -> str:
        """``catalog.csv row 7 (id sku-777)``: how messages name one row."""
        if self.path is None:
            return _where("manifest", "row", row, item_id)
        return _where(display_path(self.path), UNITS.get(suffix(self.path), "row"), row, item_id)


def load_manifest(cfg: RunConfig, keep: Callable[[str | None], bool] | None = None) -> Manifest:
    """Read the manifest named by ``cfg``; file-level faults raise ConfigError, bad rows go to ``invalid``.

    ``keep`` (a shard's ``owns``) is applied while the rows stream: only the rows it keeps become
    Items or InvalidItems, so a shard holds its own share. The other rows are still read for what
    they share with these (an output file name), and the result is the whole manifest's, selected."""
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
    if export is not None:  # a store's own export, or a table `columns` maps (inputs/stores)
        summary, rows = stores.read_rows(export, cfg.store.images, shown)
        table = Table(["id", "image", *export.columns, *stores.STORE_COLUMNS],
                      [(row, cells, problems, frozenset()) for row, cells, problems in rows])
        _check_columns(table.columns, prompt, name, path, cfg)
        manifest = _build(table, prompt, name, path, shown, tuple(v.name for v in cfg.variants))
        return dataclasses.replace(manifest, sha256=stores.digest(path, cfg.storage.options), store=summary)
    text = read_text(path, shown, "manifest", cfg.storage.options)
    table = reader(text, shown)
    try:
        _check_columns(table.columns, prompt, name, path, cfg)
    except ConfigError:
        for _ in table.rows:
            pass  # a fault further down the file is said instead, as when every row was read first
        raise
    variants = tuple(v.name for v in cfg.variants)
    manifest = _build(table, prompt, name, path, shown, variants, keep)
    if manifest is None:  # a kept row may share its output file name with an earlier row not kept
        whole = _build(reader(text, shown), prompt, name, path, shown, variants)
        manifest = dataclasses.replace(whole, items=[i for i in whole.items if keep(i.id)],
                                       invalid=[b for b in whole.invalid if keep(b.id)])
    return dataclasses.replace(manifest, sha256=text_sha256(text))


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


def manifest_base(path: Path | str | None) -> Path | str:
    """What a relative image path resolves against: the manifest's folder, or its folder URL."""
    if path is None:
        return Path(".")
    return remote.parent(path) if isinstance(path, str) else path.parent


def resolve_image(base: Path | str, image: str) -> tuple[Path | None, str | None]:
    """(local path, None) or (None, URL) of an image cell: http(s) and storage URLs as written, a
    relative path against the manifest's folder, inside its bucket when the manifest is in one."""
    if is_http_url(image) or remote.is_remote(image):
        return None, image
    image = remote.local_path(image)
    if isinstance(base, str) and not os.path.isabs(image):
        return None, remote.join(base, image)
    return Path(os.path.normpath(os.path.join(base, image))), None


def _build(table: Table, prompt_t: Template | None, name_t: Template, path: Path | str, shown: str,
           variants: tuple[str, ...] = (), keep: Callable[[str | None], bool] | None = None) -> Manifest | None:
    """Items and invalid rows of ``table`` (those ``keep`` keeps); None when a kept row's output file
    name may also be an earlier row's that was not kept: the caller then builds every row."""
    unit = UNITS.get(suffix(path), "row")
    checker = schema_checker("manifest", "/$defs/item")
    base = manifest_base(path)
    paths: dict[str, tuple[Path | None, str | None]] = {}
    ids: dict[str, int] = {}
    names: dict[str, tuple[int, str, str]] = {}
    others: set[int] = set()  # hashes of the casefolded output names of rows not kept
    shared: dict[str, str] = {}  # one str object for each repeated prompt (and extra cell)
    row_prompt_wins = prompt_t is not None and "prompt" not in prompt_t.fields
    items: list[Item] = []
    invalid: list[InvalidItem] = []
    for row, cells, problems, reported in table.rows:
        if cells is None:
            invalid.append(InvalidItem(None, row, [f"{_where(shown, unit, row, None)}: {p}" for p in problems]))
            continue
        item_id = cells["id"] = (cells.get("id") or "").strip()
        image = cells["image"] = (cells.get("image") or "").strip()
        if keep is not None and not keep(item_id or None):
            # Duplicates of this id are not kept either (the same id, the same shard); only the output
            # file names it would take first are remembered, compactly.
            for v in variants or (None,):
                try:
                    others.add(hash(name_t.fill({**cells, "variant": v} if variants else cells).casefold()))
                except KeyError:
                    pass  # this row is not ours: what it lacks is its shard's to say
            continue
        record = {"id": item_id, "image": image}
        own = cells.get("prompt")
        if prompt_t is None or (row_prompt_wins and own and own.strip()):
            if variants:  # steps name their own prompts; a {prompt} placeholder needs this one
                if own and own.strip():
                    record["prompt"] = own
            elif own is None and "prompt" not in reported:
                problems.append("prompt is required: the config sets no prompt")
            elif own is not None:
                record["prompt"] = own
        elif (filled := _fill(prompt_t, cells, "prompt", problems)) is not None:
            record["prompt"] = filled
        image_ok = True
        for error in checker.errors(record):
            # A missing field was reported above; a field the reader complained about, by the reader.
            image_ok = image_ok and next(iter(error.absolute_path), None) != "image"
            if error.validator == "pattern" and "/" in item_id and list(error.absolute_path) == ["id"]:
                problems.append(f"id {item_id!r} must not contain '/': the checkpoint keeps a variant's steps as "
                                f"{item_id}/{{variant}}/{{n}}, which another item's id could then be")
            elif error.validator != "required" and next(iter(error.absolute_path), None) not in reported:
                problems.extend(describe(error, {}))
        if image_ok and (problem := _scheme_problem(image)):
            problems.append(f"image {image!r}: {problem}")
        duplicate = item_id in ids
        if duplicate:
            problems.append(f"duplicate id: first used on {unit} {ids[item_id]}")
        elif item_id:
            ids[item_id] = row
        output_names = [_fill(name_t, {**cells, "variant": v}, "output.filename", problems)
                        for v in variants] if variants else [_fill(name_t, cells, "output.filename", problems)]
        for output_name in dict.fromkeys(output_names):
            if output_name is None:
                continue
            if problem := output_name_problem(output_name):
                problems.append(f"output file name {output_name!r} {problem}")
            elif not duplicate:
                if others and hash(output_name.casefold()) in others and output_name.casefold() not in names:
                    return None  # perhaps first used by a row not kept: only the whole manifest can say
                problems += _collision(names, output_name, row, item_id, unit)
        if problems:
            where = _where(shown, unit, row, item_id)
            invalid.append(InvalidItem(item_id or None, row, [f"{where}: {p}" for p in problems]))
            continue
        if (located := paths.get(image)) is None:
            located = paths[image] = (image, *resolve_image(base, image))
        image, image_path, image_url = located  # one str and Path per distinct image, shared by its rows
        extra = {k: _shared(shared, v) for k, v in cells.items() if k not in RESERVED} or _NO_EXTRA
        items.append(Item(item_id, image, _shared(shared, record.get("prompt", "")), row, image_path, image_url,
                          output_names[0], extra, tuple(output_names) if variants else ()))
    return Manifest(items, invalid, table.columns, path)


_NO_EXTRA: dict[str, str] = {}  # every item without extra columns shares it; nothing writes to an Item's extra


def _shared(pool: dict[str, str], text: str) -> str:
    """One object per distinct text while the pool is small (prompts repeat over a catalog's rows)."""
    if len(pool) < 100_000:
        return pool.setdefault(text, text)
    return pool.get(text, text)


@lru_cache(maxsize=4096)
def _scheme_problem(image: str) -> str | None:
    """Why a storage URL's scheme cannot be read, or None (and None for any other image)."""
    return remote.scheme_problem(image) if remote.is_remote(image) else None


def _casefold(name: str) -> str:
    """The key names collide under; the name itself (no second string) when casefolding leaves it."""
    folded = name.casefold()
    return name if folded == name else folded


def _collision(names: dict[str, tuple[int, str, str]], name: str, row: int, item_id: str, unit: str) -> list[str]:
    """A second item writing the same output file; names differing only in case count (macOS, Windows)."""
    first_row, first_id, first_name = names.setdefault(_casefold(name), (row, item_id, name))
    if first_row == row:
        return []
    case = "" if first_name == name else f" as {first_name!r}; names differing only in case collide on macOS/Windows"
    return [f"output file name {name!r} is also used by {unit} {first_row} (id {first_id}){case}"]


def _fill(template: Template, cells: dict[str, str], what: str, problems: list[str]) -> str | None:
    try:
        return template.fill(cells)
    except KeyError as exc:
        problems.append(f"{what} uses {{{exc.args[0]}}}, which this item does not have")
        return None


def _where(shown: str, unit: str, row: int, item_id: str | None) -> str:
    if not item_id:
        return f"{shown} {unit} {row}"
    if len(item_id) > 40 or not item_id.isprintable() or any(c.isspace() for c in item_id):
        return f"{shown} {unit} {row} (id {item_id[:40]!r}{'...' if len(item_id) > 40 else ''})"
    return f"{shown} {unit} {row} (id {item_id})"


def check_images(items: Iterable[Item]) -> dict[str, str]:
    """Item id -> one-line problem for local images that are missing, unreadable or not images.

    Only the header is read (``PIL.Image.open`` is lazy), once per distinct path. URLs are skipped:
    they are checked when fetched.
    """
    seen: dict[Path, str | None] = {}
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
