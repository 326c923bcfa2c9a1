"""The checkpoint's rows as a mapping that holds none of them: read from SQLite when asked, in batches.

    rows = RowView(ckpt)                       # make_plan's `rows`, what run/ and outputs/ read
    rows.get("sku-1")                          # one SELECT (or the Row this run holds)
    rows["sku-1"] = row                        # the run's own rows are kept here, the same objects
    for chunk, found in batches(rows, items, ("state", "output_path")):   # found: {id: tuple}

A no-op rerun of a million done items decides, counts and tables them batch by batch, so it holds
the rows of one batch at a time, not a `Row` per item (#21). A row this run planned, wrote or
changed is kept as its `Row` in an overlay: `Checkpoint.save` mutates that object, and the planner,
the drive loop and `finish` must all see the same one. Every read goes through the checkpoint's own
connection, so it sees this run's writes before they are committed.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from operator import attrgetter
from typing import TypeVar

from pipeline.store.checkpoint import COLUMNS, Checkpoint, Row

BATCH = 4000  # ids in one `WHERE id IN (...)`: well under SQLite's 32766 variables
T = TypeVar("T")
_ALL = ", ".join(COLUMNS)


class RowView(MutableMapping):
    """Mapping id -> Row over a checkpoint's `items`, materialising a Row only when one is asked for."""

    def __init__(self, ckpt: Checkpoint):
        self._ckpt = ckpt
        self.changed: dict[str, Row] = {}  # rows of this run: planned, copied, adopted, written

    def __getitem__(self, key: str) -> Row:
        row = self.changed.get(key)
        if row is not None:
            return row
        found = self._ckpt.query(f"SELECT {_ALL} FROM items WHERE id = ?", (key,)).fetchone()
        if found is None:
            raise KeyError(key)
        return Row(*found)

    def __contains__(self, key: object) -> bool:
        return key in self.changed or self._ckpt.query("SELECT 1 FROM items WHERE id = ?", (key,)).fetchone() \
            is not None

    def __setitem__(self, key: str, row: Row) -> None:
        self.changed[key] = row

    def __delitem__(self, key: str) -> None:
        raise TypeError("RowView: checkpoint rows are not deleted")

    def __len__(self) -> int:
        stored = self._ckpt.query("SELECT COUNT(*) FROM items", ()).fetchone()[0]
        return stored + sum(1 for key in self._unstored())

    def __iter__(self) -> Iterator[str]:
        for chunk in self._scan("id"):
            yield from (r[0] for r in chunk)
        yield from self._unstored()

    def values(self):  # type: ignore[override] - a stream, not a view: one read of the table
        for chunk in self._scan(_ALL):
            for r in chunk:
                yield self.changed.get(r[0]) or Row(*r)
        yield from (self.changed[key] for key in self._unstored())

    def items(self):  # type: ignore[override]
        for row in self.values():
            yield row.id, row

    def summary(self) -> tuple:
        """What changes whenever any row does (counts, and updated_at summed and at its newest, per state),
        in one aggregate query: a stamp's digest of a million rows without reading them into Python.
        Every write of a row sets its updated_at (Checkpoint.insert, save)."""
        return tuple(self._ckpt.query(
            "SELECT state, COUNT(*), TOTAL(updated_at), MAX(updated_at), TOTAL(credits), "
            "SUM(image_sha256 IS NULL OR image_sha256 = '') FROM items GROUP BY state ORDER BY state", ()).fetchall())

    def fetch(self, ids: Sequence[str], columns: Sequence[str]) -> dict[str, tuple]:
        """{id: (columns...)} of those of `ids` that have a row; one query for up to BATCH ids."""
        found: dict[str, tuple] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            found = {r[0]: r[1:] for r in self._ckpt.query(
                f"SELECT id, {', '.join(columns)} FROM items WHERE id IN ({marks})", tuple(ids))}
        if self.changed:
            get = _getter(columns)
            for key in ids:
                if (row := self.changed.get(key)) is not None:
                    found[key] = get(row)
        return found

    def _scan(self, columns: str) -> Iterator[list[tuple]]:
        """The table in rowid order, BATCH rows a query (no cursor stays open across a write)."""
        last = -1
        while True:
            chunk = self._ckpt.query(f"SELECT rowid, {columns} FROM items WHERE rowid > ? ORDER BY rowid "
                                     f"LIMIT {BATCH}", (last,)).fetchall()
            if not chunk:
                return
            last = chunk[-1][0]
            yield [r[1:] for r in chunk]

    def _unstored(self) -> Iterator[str]:
        """Ids of this run's rows that are not in the table yet (planned, not yet inserted)."""
        for key in list(self.changed):
            if self._ckpt.query("SELECT 1 FROM items WHERE id = ?", (key,)).fetchone() is None:
                yield key


def _getter(columns: Sequence[str]):
    get = attrgetter(*columns)
    return (lambda row: (get(row),)) if len(columns) == 1 else get


def fetch(rows: Mapping[str, Row], ids: Sequence[str], columns: Sequence[str]) -> dict[str, tuple]:
    """`RowView.fetch` over any mapping of rows (a plain dict in tests and `pipeline report`)."""
    if isinstance(rows, RowView):
        return rows.fetch(ids, columns)
    get = _getter(columns)
    return {key: get(row) for key in ids if (row := rows.get(key)) is not None}


def chunks(values: Sequence[T], size: int | None = None) -> Iterator[Sequence[T]]:
    size = size or BATCH
    for start in range(0, len(values), size):
        yield values[start:start + size]


def batches(rows: Mapping[str, Row], items: Sequence, columns: Sequence[str],
            key=attrgetter("id")) -> Iterator[tuple[Sequence, dict[str, tuple]]]:
    """(a chunk of `items`, {id: tuple of `columns`} of those with a row), BATCH items at a time."""
    for chunk in chunks(items):
        yield chunk, fetch(rows, [key(item) for item in chunk], columns)


def rows_of(rows: Mapping[str, Row], ids: Iterable[str]) -> dict[str, Row]:
    """{id: Row} for those of `ids` that have a row: this run's own objects, others read in batches."""
    ids = list(ids)
    if not isinstance(rows, RowView):
        return {key: row for key in ids if (row := rows.get(key)) is not None}
    out: dict[str, Row] = {}
    for chunk in chunks(ids):
        for key, values in rows.fetch(chunk, COLUMNS[1:]).items():
            out[key] = rows.changed.get(key) or Row(key, *values)
    return out
