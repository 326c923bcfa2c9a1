"""A manifest's rows -> Items and invalid rows: every per-row check, each problem worded with its row.

    manifest = build(table, prompt_t, name_t, path, shown, variants, keep)   # None: build every row

A million rows are checked without a dict per row not kept, and with what repeats (an image and its
prompt: their checks, resolved path and one shared str) worked out once per distinct pair.
"""
from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from pipeline.inputs.items import RESERVED, Cells, InvalidItem, Item, Manifest, where as _where
from pipeline.inputs.locations import is_http_url
from pipeline.inputs.readers import UNITS, Table, suffix
from pipeline.inputs.schema import describe, field_checks, schema_checker
from pipeline.inputs.template import Template, output_name_problem
from pipeline.store import remote


class Sink(Protocol):
    """What `build` can hand its Items to instead of a list (inputs/validate.Counted)."""
    wants_cells: bool

    def append(self, item: Item) -> None: ...


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


def build(table: Table, prompt_t: Template | None, name_t: Template, path: Path | str, shown: str,
           variants: tuple[str, ...] = (), keep: Callable[[str | None], bool] | None = None,
           into: Sink | None = None) -> Manifest | None:
    """Items and invalid rows of ``table`` (those ``keep`` keeps); None when a kept row's output file
    name may also be an earlier row's that was not kept: the caller then builds every row.

    ``into``: what receives each valid row's Item instead of a list (the Manifest's ``items``);
    without ``wants_cells`` its Items carry no other cells (`pipeline validate` counts, it keeps none)."""
    unit = UNITS.get(suffix(path), "row")
    checker = schema_checker("manifest", "/$defs/item")
    fast = field_checks("manifest", "/$defs/item")  # None: every record goes to jsonschema
    id_ok = fast["id"] if fast else None
    base = manifest_base(path)
    pairs: dict[tuple[str, str | None], tuple[str, str | None, Path | None, str | None]] = {}
    paths: dict[str, tuple[str, Path | None, str | None]] = {}
    ids: dict[str, int] = {}
    names: dict[str, str | tuple[int, str, str]] = {}  # casefolded output name -> its first row (_collision)
    others = array("q")  # hash of each casefolded output name of the rows not kept, in manifest order
    kept_at: dict[int, int] = {}  # hash of a kept row's output name -> len(others) when it was first used
    shared: dict[str, str] = {}  # one str object for each repeated prompt (and extra cell)
    layouts: dict = {}  # a dict row's columns -> (its extra columns, their positions): see _cells
    row_prompt_wins = prompt_t is not None and "prompt" not in prompt_t.fields
    columns = table.columns
    records = table.records  # a CSV: cells are lists in the columns' order
    if records:
        at_id, at_image = columns.index("id"), columns.index("image")  # a CSV without them was refused
        at_prompt = columns.index("prompt") if "prompt" in columns else None
        extra_at = [(at, column) for at, column in enumerate(columns) if column not in RESERVED]
        extra_layout = {column: n for n, (_, column) in enumerate(extra_at)}  # every row's Cells share it
        name_of = name_t.over(columns)
        prompt_of = prompt_t.over(columns) if prompt_t is not None else None
    # Without variants a CSV's row stays a list; with them, a dict by column fills {variant} per variant.
    listed = records and not variants and name_of is not None and (prompt_t is None or prompt_of is not None)
    items: list[Item] | Sink = [] if into is None else into
    cells_kept = into is None or into.wants_cells
    invalid: list[InvalidItem] = []
    for row, cells, problems, reported in table.rows:
        if cells is None:  # a row without an id is shard 0's to report, like one with an empty id
            if keep is None or keep(None):
                invalid.append(InvalidItem(None, row, [f"{_where(shown, unit, row, None)}: {p}"
                                                       for p in problems]))
            continue
        if records:
            item_id = cells[at_id] = cells[at_id].strip()
            image = cells[at_image] = cells[at_image].strip()
        else:
            item_id = cells["id"] = (cells.get("id") or "").strip()
            image = cells["image"] = (cells.get("image") or "").strip()
        if keep is not None and not keep(item_id or None):
            # Duplicates of this id are not kept either (the same id, the same shard); only the output
            # file names it would take first are remembered, compactly.
            if listed:
                others.append(hash(name_of(cells).casefold()))
                continue
            if records:
                cells = dict(zip(columns, cells))
            for v in variants or (None,):
                try:
                    others.append(hash(name_t.fill({**cells, "variant": v} if variants else cells).casefold()))
                except KeyError:
                    pass  # this row is not ours: what it lacks is its shard's to say
            continue
        if records and not listed:
            cells = dict(zip(columns, cells))
        record = {"id": item_id, "image": image}
        own = (None if at_prompt is None else cells[at_prompt]) if listed else cells.get("prompt")
        if prompt_t is None or (row_prompt_wins and own and own.strip()):
            if variants:  # steps name their own prompts; a {prompt} placeholder needs this one
                if own and own.strip():
                    record["prompt"] = own
            elif own is None and "prompt" not in reported:
                problems.append("prompt is required: the config sets no prompt")
            elif own is not None:
                record["prompt"] = own
        elif (filled := prompt_of(cells) if listed else _fill(prompt_t, cells, "prompt", problems)) is not None:
            record["prompt"] = filled
        prompt = record.get("prompt")
        # A missing prompt is said above (or not needed): only the values' own checks can fail here.
        if (known := pairs.get((image, prompt))) is not None and id_ok(item_id):
            pass
        elif fast and id_ok(item_id) and fast["image"](image) and (prompt is None or fast["prompt"](prompt)):
            if (problem := _scheme_problem(image)) is not None:
                problems.append(f"image {image!r}: {problem}")
            else:
                known = _known(pairs, paths, shared, base, image, prompt)
        else:
            known = None
            image_ok = True
            for error in checker.errors(record):
                # A missing field was reported above; a field the reader complained about, by the reader.
                image_ok = image_ok and next(iter(error.absolute_path), None) != "image"
                if error.validator == "pattern" and "/" in item_id and list(error.absolute_path) == ["id"]:
                    problems.append(f"id {item_id!r} must not contain '/': the checkpoint keeps a variant's steps "
                                    f"as {item_id}/{{variant}}/{{n}}, which another item's id could then be")
                elif error.validator != "required" and next(iter(error.absolute_path), None) not in reported:
                    problems.extend(describe(error, {}))
            if image_ok and (problem := _scheme_problem(image)):
                problems.append(f"image {image!r}: {problem}")
        duplicate = False
        if item_id:  # one probe of a million-key dict, not two: setdefault, and did it grow?
            size = len(ids)
            first = ids.setdefault(item_id, row)
            if len(ids) == size:
                duplicate = True
                problems.append(f"duplicate id: first used on {unit} {first}")
        if variants:
            output_names = [_fill(name_t, {**cells, "variant": v}, "output.filename", problems) for v in variants]
            distinct = dict.fromkeys(output_names)
        else:
            output_names = distinct = (name_of(cells) if listed else _fill(name_t, cells, "output.filename", problems),)
        for output_name in distinct:
            if output_name is None:
                continue
            if problem := output_name_problem(output_name):
                problems.append(f"output file name {output_name!r} {problem}")
            elif not duplicate:
                problems += _collision(names, ids, output_name, row, item_id, unit,
                                       None if keep is None else (kept_at, len(others)))
        if problems:
            where = _where(shown, unit, row, item_id)
            invalid.append(InvalidItem(item_id or None, row, [f"{where}: {p}" for p in problems]))
            continue
        if known is None:
            known = _known(pairs, paths, shared, base, image, prompt, remember=False)
        prompt, image, image_path, image_url = known  # one str and Path per distinct image, shared by its rows
        if not cells_kept:
            extra = _NO_EXTRA
        elif listed:
            extra = Cells(extra_layout, _shared_all(shared, [cells[at] for at, _ in extra_at])) if extra_at \
                else _NO_EXTRA
        else:
            extra = _cells(layouts, shared, cells)
        items.append(Item(item_id, image, prompt, row, image_path, image_url,
                          output_names[0], extra, tuple(output_names) if variants else ()))
    if kept_at and others and _taken_before(others, kept_at):
        return None  # a kept row's output file name was perhaps first used by a row not kept
    return Manifest(items, invalid, columns, path)  # type: ignore[arg-type]  # a Sink stands for the list


def _known(pairs: dict, paths: dict, shared: dict[str, str], base: Path | str, image: str, prompt: str | None,
           remember: bool = True) -> tuple[str, str, Path | None, str | None]:
    """(the prompt's shared str, the image's, its path, its URL) of a checked (image, prompt), worked
    out once per pair and remembered for the rows that repeat it."""
    if (located := paths.get(image)) is None:
        located = paths[image] = (image, *resolve_image(base, image))
    known = (_shared(shared, prompt or ""), *located)
    if remember and len(pairs) < 100_000:
        pairs[(image, prompt)] = known
    return known


def _taken_before(others: array, kept_at: dict[int, int]) -> bool:
    """Whether a name a kept row used first (by its hash) was taken by an earlier row not kept."""
    for position, name_hash in enumerate(others):
        if (first := kept_at.get(name_hash)) is not None and position < first:
            return True
    return False


MAX_LAYOUTS = 64
SHARED = 100_000  # distinct texts the pool of shared strings takes
_NO_EXTRA: dict[str, str] = {}  # every item without extra columns shares it; nothing writes to an Item's extra


def _cells(layouts: dict[tuple[str, ...], tuple[tuple[str, ...], dict[str, int]]], shared: dict[str, str],
           cells: dict[str, str]):
    """A dict row's cells but the reserved ones, as Cells over the layout its columns share with other
    rows (a store export's rows all have one); a dict for rows whose columns keep changing. Faster
    than the dict comprehension it replaces (2 against 3.5 µs a row of 25 cells)."""
    if (layout := layouts.get(columns := tuple(cells))) is None:
        keys = tuple(k for k in columns if k not in RESERVED)
        if len(layouts) >= MAX_LAYOUTS:  # a YAML or JSONL manifest whose rows each name other fields
            return {k: _shared(shared, cells[k]) for k in keys} or _NO_EXTRA
        layout = layouts[columns] = (keys, {k: i for i, k in enumerate(keys)})
    keys, at = layout
    if not keys:
        return _NO_EXTRA
    return Cells(at, _shared_all(shared, [cells[k] for k in keys]))


def _shared_all(pool: dict[str, str], texts: list[str]) -> tuple[str, ...]:
    """`_shared` of each of a row's texts, in C (map over the pool's own methods): a million rows of
    several cells each made the function calls a second of the build."""
    return tuple(map(pool.setdefault if len(pool) < SHARED else pool.get, texts, texts))


def _shared(pool: dict[str, str], text: str) -> str:
    """One object per distinct text while the pool is small (prompts repeat over a catalog's rows)."""
    if len(pool) < SHARED:
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


def _collision(names: dict[str, str | tuple[int, str, str]], ids: dict[str, int], name: str, row: int,
               item_id: str, unit: str, kept: tuple[dict[int, int], int] | None = None) -> list[str]:
    """A second item writing the same output file; names differing only in case count (macOS, Windows).

    A name first used as it casefolds, by a row with an id, keeps only that id (its row is ``ids[id]``),
    not a tuple per row. ``kept`` (a shard's): each name's hash and how many names of rows not kept came first."""
    key = _casefold(name)
    size = len(names)
    first = names.setdefault(key, item_id if key is name and item_id else (row, item_id, name))
    if len(names) != size:
        if kept is not None:
            kept[0].setdefault(hash(key), kept[1])
        return []
    first_row, first_id, first_name = (ids[first], first, first) if isinstance(first, str) else first
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
