"""The manifest's readers, one per file type: text in, columns and numbered rows of cells out.

    table = READERS[suffix(path)](text, shown)    # Table(columns, rows); a CSV's rows stream, read once

A reader finds what is wrong with the file as a whole (raised as one ConfigError) and with each row
(kept on the row); building Items from the rows is `inputs/manifest.py`'s.
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import IO, Any, NamedTuple

from pipeline.errors import ConfigError
from pipeline.inputs.files import load_yaml, unreadable
from pipeline.inputs.schema import SchemaChecker, compile_fast, describe, load_schema, schema_checker, schema_problems

# (row number, cells or None if unusable, problems found, fields those problems already cover); a CSV's
# cells are a list in the header's order (padded to its width), any other reader's a dict by column
Row = tuple[int, "dict[str, str] | list[str] | None", list[str], frozenset[str]]
NONE: frozenset[str] = frozenset()


class Table(NamedTuple):
    """What a reader hands on: columns in order, and its rows."""
    columns: list[str]
    rows: Iterable[Row]  # a CSV's stream as it is read: iterate it once
    records: bool = False  # cells are lists in the order of `columns` (a CSV: no dict per row read)


def suffix(path: Path | str) -> str:
    """`.csv`, `.yaml` or `.yml` (lower case) of a manifest path or URL."""
    return os.path.splitext(os.fspath(path))[1].lower()


def _read_csv(text: str | IO[str], shown: str) -> Table:
    """The header and the first item are read here (an empty manifest is a file-level fault, found
    before the columns are checked); the other rows stream, one at a time, as `rows` is iterated.
    ``text`` is the manifest's text, or a local file opened by `opened_csv`."""
    rows = _csv_rows(text, shown)
    header = next(rows, None)
    if header is None:
        raise ConfigError(f"{shown}: the manifest is empty; it needs a header row (id,image,...) and items")
    first = next(rows, None)
    if first is None:
        raise ConfigError(f"{shown}: the manifest has a header but no items")
    return Table(header, itertools.chain((first,), rows), records=True)


# A line as io.StringIO(text, newline="") hands it to csv.reader: ended by \r\n, \r or \n, kept.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# What str.splitlines also breaks at, besides those three (it is twice as fast as the pattern above).
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CHUNK = 1 << 20


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ends, a megabyte of them at a time."""
    if _OTHER_BREAKS.search(text):
        return (m.group() for m in _LINE.finditer(text))
    return itertools.chain.from_iterable(_chunks(text))  # no Python frame per line


def _chunks(text: str) -> Iterator[list[str]]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)  # a chunk ends after a \n: a \r\n is never cut in two
        end = len(text) if end < 0 else end + 1
        yield text[start:end].splitlines(True)
        start = end


@contextlib.contextmanager
def opened_csv(path: Path, shown: str) -> Iterator[Table]:
    """A local CSV read from the file as its rows are asked for (`files.checked_local` has checked
    its bytes as `read_text` would), so its text is never held whole."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise unreadable(exc, shown, "manifest") from None
    with handle:
        yield _read_csv(handle, shown)


def _csv_rows(text: str | IO[str], shown: str) -> Iterator:
    """The header's names, then each item's row; lines are cut from `text` as the reader asks for
    them, so a million rows never exist at once (a StringIO copy would cost four bytes a character).
    A file opened with newline="" hands csv the same lines."""
    header: list[str] | None = None
    number = 0
    try:
        for number, record in enumerate(csv.reader(_lines(text) if isinstance(text, str) else text), start=1):
            if not any(record):
                continue  # blank line, or a row of empty cells as spreadsheets export them
            if header is None:
                header = _header(record, shown, number)
                width = len(header)
                yield header
                continue
            problems = []
            if len(record) != width:
                if len(record) > width:
                    if any(cell.strip() for cell in record[width:]):
                        problems.append(f"has {len(record)} cells but the header names {width} columns")
                    del record[width:]
                else:
                    record += [""] * (width - len(record))
            yield number, record, problems, NONE
    except csv.Error as exc:
        raise ConfigError(f"{shown}: row {number + 1}: {exc}") from None
    except UnicodeDecodeError:  # the file changed since it was checked
        raise ConfigError(f"{shown}: row {number + 1}: not UTF-8 text; save the file as UTF-8") from None


def _header(record: list[str], shown: str, number: int) -> list[str]:
    names = [cell.strip() for cell in record]
    while names and not names[-1]:
        names.pop()  # trailing commas
    problems = [f"{shown}: row {number}: column {i} of the header has no name"
                for i, name in enumerate(names, start=1) if not name]
    problems += [f"{shown}: row {number}: column {name!r} appears more than once in the header"
                 for name in dict.fromkeys(n for n in names if n and names.count(n) > 1)]
    if problems:
        raise ConfigError(problems)
    return names


def _read_yaml(text: str, shown: str) -> Table:
    doc = load_yaml(text, shown)
    if doc is None:
        raise ConfigError(f"{shown}: the manifest is empty; it needs `items:`, a list of id/image/... mappings")
    if not isinstance(doc, dict):
        kind = "list" if isinstance(doc, list) else type(doc).__name__
        raise ConfigError(f"{shown}: a YAML manifest must be a mapping with `items:`, not a {kind}")
    if lines := schema_problems(_document_checker(), doc):
        raise ConfigError([f"{shown}: {line}" for line in lines])
    row_checker = schema_checker("manifest", "/$defs/row")
    columns: dict[str, None] = {}
    rows: list[Row] = []
    for number, raw in enumerate(doc["items"], start=1):
        errors = row_checker.errors(raw)
        problems = [line for error in errors for line in describe(error, {})]
        if not isinstance(raw, dict):
            rows.append((number, None, problems, NONE))
            continue
        reported = {str(e.absolute_path[0]) for e in errors if e.absolute_path}
        reported.update(k for e in errors if e.validator == "required" for k in e.validator_value if k not in raw)
        cells = {str(k): _text(v) for k, v in raw.items()}
        columns.update(dict.fromkeys(cells))
        rows.append((number, cells, problems, frozenset(reported)))
    return Table(list(columns), rows)


@cache
def _document_checker() -> SchemaChecker:
    """The manifest schema without its per-item rule: rows are checked one by one, cheaply."""
    root = load_schema("manifest")
    items = {k: v for k, v in root["properties"]["items"].items() if k != "items"}
    schema = {**root, "properties": {**root["properties"], "items": items}}
    return SchemaChecker(schema, compile_fast(schema, schema))


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


READERS = {".csv": _read_csv, ".yaml": _read_yaml, ".yml": _read_yaml}
UNITS = {".csv": "row", ".yaml": "item", ".yml": "item", ".xml": "item", ".jsonl": "line", ".ndjson": "line"}
