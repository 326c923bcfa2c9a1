"""Text exports opened as a stream of records: UTF-8 (BOM or not), comma or tab separated.

Records are numbered as a spreadsheet shows them (header = row 1; a quoted cell spanning lines is one
row), as the plain manifest reader numbers them.
"""
from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.files import read_text, unreadable

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # Shopify descriptions can pass csv's 128 KiB default


@contextlib.contextmanager
def open_text(path: Path | str, shown: str, options: Mapping[str, Any] | None = None) -> Iterator[IO[str]]:
    """A local export is read as a stream; a storage URL is read whole, as the plain manifest is."""
    if isinstance(path, str):
        yield io.StringIO(read_text(path, shown, "manifest", options), newline="")
        return
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise unreadable(exc, shown, "manifest") from None
    with handle:
        yield handle


@contextlib.contextmanager
def table(path: Path | str, shown: str, options: Mapping[str, Any] | None = None
          ) -> Iterator[tuple[list[str], Iterator[tuple[int, dict[str, str]]]]]:
    """The header of a CSV/TSV export and its rows as (line number, cells by column), streamed."""
    with open_text(path, shown, options) as handle:
        rows = records(handle, shown)
        _, first = next(rows)
        header = header_of(first, shown)
        yield header, ((number, cells_of(header, record)) for number, record in rows)


def delimiter(first_line: str) -> str:
    """Whichever of comma, tab (Merchant Center's usual TSV) and semicolon (a spreadsheet saved in a
    locale whose decimal mark is a comma) the header holds most; comma on a tie."""
    return max((",", "\t", ";"), key=first_line.count)


def records(handle: IO[str], shown: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every non-blank record, the header first."""
    first = handle.readline()
    handle.seek(0)
    number = 0
    try:
        for number, record in enumerate(csv.reader(handle, delimiter=delimiter(first)), start=1):
            if any(record):
                yield number, record
    except csv.Error as exc:
        raise ConfigError(f"{shown}: row {number + 1}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: row {number + 1}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                          f"save the file as UTF-8") from None


def header_of(record: list[str], shown: str) -> list[str]:
    """The header's names, stripped; an unnamed or repeated column is a file-level error."""
    names = [cell.strip() for cell in record]
    while names and not names[-1]:
        names.pop()
    problems = [f"{shown}: row 1: column {i} of the header has no name" for i, n in enumerate(names, 1) if not n]
    problems += [f"{shown}: row 1: column {n!r} appears more than once in the header"
                 for n in dict.fromkeys(n for n in names if n and names.count(n) > 1)]
    if problems:
        raise ConfigError(problems)
    return names


def cells_of(header: list[str], record: list[str]) -> dict[str, str]:
    """One record as {column: cell}; short records are padded with empty cells."""
    if len(record) < len(header):
        record = record + [""] * (len(header) - len(record))
    return dict(zip(header, record))


def split_urls(cell: str) -> list[str]:
    """A comma-separated list of picture URLs (WooCommerce Images, additional_image_link)."""
    return [part.strip() for part in cell.split(",") if part.strip()]
