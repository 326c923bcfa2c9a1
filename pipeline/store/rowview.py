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

`ReadView` is the same over several checkpoints opened read-only (every shard's, as `pipeline report`
merges them): an item in several is its most recently updated row, as `state_dirs.merged_rows` says.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

from pipeline.errors import CheckpointError
from pipeline.store.checkpoint import COLUMNS, Checkpoint, Row
from pipeline.store.readonly import APPLICATION_ID

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
        return tuple(self._ckpt.query(_SUMMARY, ()).fetchall())

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


_SUMMED = {"state", "updated_at", "credits", "image_sha256"}
_SUMMARY = ("SELECT state, COUNT(*), TOTAL(updated_at), MAX(updated_at), TOTAL(credits), "
            "SUM(image_sha256 IS NULL OR image_sha256 = '') FROM items GROUP BY state ORDER BY state")


class ReadView(Mapping):
    """Mapping id -> Row over several checkpoints, read-only (shards may be running), a batch a query.

        with ReadView(paths, base=stored) as rows:   # `base`: rows for ids no checkpoint holds
            write_outputs(cfg, manifest, rows)

    For an item in several, the most recently updated row (the first path's on a tie). Each
    checkpoint is read in one read transaction, so every batch sees the same snapshot of it; a
    checkpoint of an older schema reads NULL for the columns it lacks."""

    def __init__(self, paths: Sequence[Path], base: Mapping[str, Row] | None = None, timeout_s: float = 30.0):
        self.base = base or {}
        self._dbs: list[tuple[sqlite3.Connection, set[str], Path]] = []
        try:
            for path in paths:
                if (opened := _open_read_only(Path(path), timeout_s)) is not None:
                    self._dbs.append(opened)
        except CheckpointError:
            self.close()
            raise

    def __enter__(self) -> "ReadView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn, _, _ in self._dbs:
            conn.close()
        self._dbs = []

    def __getitem__(self, key: str) -> Row:
        found = self.fetch([key], COLUMNS[1:])
        if key not in found:
            raise KeyError(key)
        return Row(key, *found[key])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.fetch([key], ("state",))

    def __iter__(self) -> Iterator[str]:
        if len(self._dbs) == 1:
            for chunk in self._scan(0, "id"):
                yield from (r[0] for r in chunk)
            yield from (key for key in self.base if not self._held(key))
            return
        seen: set[str] = set()  # several checkpoints may hold an item: each id once
        for n in range(len(self._dbs)):
            for chunk in self._scan(n, "id"):
                fresh = [r[0] for r in chunk if r[0] not in seen]
                seen.update(fresh)
                yield from fresh
        yield from (key for key in self.base if key not in seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def ids_in_state(self, state: str) -> set[str]:
        """The ids some checkpoint holds in `state` (its newest row may be in another state)."""
        return {r[0] for n in range(len(self._dbs)) for r in self._query(n, "SELECT id FROM items WHERE state = ?",
                                                                         (str(state),))}

    def summary(self) -> tuple | None:
        """RowView.summary of each checkpoint; None with `base` rows, which no query sums up, or a
        checkpoint of a schema without the columns it sums."""
        if self.base or any(not _SUMMED <= names for _, names, _ in self._dbs):
            return None
        if len(self._dbs) == 1:  # the summary, and so the stamps' digest, a run of this checkpoint makes
            return tuple(self._query(0, _SUMMARY, ()).fetchall())
        return tuple((n, *r) for n in range(len(self._dbs)) for r in self._query(n, _SUMMARY, ()).fetchall())

    def fetch(self, ids: Sequence[str], columns: Sequence[str]) -> dict[str, tuple]:
        """{id: (columns...)} of those of `ids` that have a row; one query per checkpoint for up to BATCH ids."""
        found: dict[str, tuple] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            params = tuple(ids)
            newest: dict[str, float] = {}
            for n, (_, names, _) in enumerate(self._dbs):
                cols = ", ".join(c if c in names else "NULL" for c in ("updated_at", *columns))
                for r in self._query(n, f"SELECT id, {cols} FROM items WHERE id IN ({marks})", params):
                    when = r[1] or 0
                    if r[0] not in found or when > newest[r[0]]:
                        found[r[0]], newest[r[0]] = r[2:], when
        if self.base and len(found) < len(ids):
            get = _getter(columns)
            for key in ids:
                if key not in found and (row := self.base.get(key)) is not None:
                    found[key] = get(row)
        return found

    def _held(self, key: str) -> bool:
        return self._query(0, "SELECT 1 FROM items WHERE id = ?", (key,)).fetchone() is not None

    def _scan(self, n: int, columns: str) -> Iterator[list[tuple]]:
        last = -1
        while chunk := self._query(n, f"SELECT rowid, {columns} FROM items WHERE rowid > ? ORDER BY rowid "
                                      f"LIMIT {BATCH}", (last,)).fetchall():
            last = chunk[-1][0]
            yield [r[1:] for r in chunk]

    def _query(self, n: int, sql: str, params: tuple) -> sqlite3.Cursor:
        conn, _, path = self._dbs[n]
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None


def _open_read_only(path: Path, timeout_s: float) -> tuple[sqlite3.Connection, set[str], Path] | None:
    """A checkpoint opened read-only in a read transaction, with its items' columns, as
    store/readonly.read_only checks it; None while its run is creating it, or when it holds no rows
    (a dry run's shard): nothing to merge, and the summary of the one left is its own run's."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    try:
        conn.execute("BEGIN")  # one snapshot for every batch read from it
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        names = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
        if app_id == 0 and not names:
            conn.close()
            return None
        if app_id != APPLICATION_ID:
            raise CheckpointError(f"{path} is not a pipeline checkpoint (a foreign SQLite file)")
        if conn.execute("SELECT 1 FROM items LIMIT 1").fetchone() is None:
            conn.close()
            return None
    except sqlite3.Error as exc:
        conn.close()
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    except CheckpointError:
        conn.close()
        raise
    return conn, names, path


def summary_of(rows: Mapping[str, Row]) -> tuple | None:
    """A batched view's summary (what changes whenever a row does), or None for rows in memory."""
    return rows.summary() if isinstance(rows, (RowView, ReadView)) else None


def _getter(columns: Sequence[str]):
    get = attrgetter(*columns)
    return (lambda row: (get(row),)) if len(columns) == 1 else get


def fetch(rows: Mapping[str, Row], ids: Sequence[str], columns: Sequence[str]) -> dict[str, tuple]:
    """`RowView.fetch` over any mapping of rows (a plain dict in tests, a ReadView in `pipeline report`)."""
    if isinstance(rows, (RowView, ReadView)):
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
    if not isinstance(rows, (RowView, ReadView)):
        return {key: row for key in ids if (row := rows.get(key)) is not None}
    changed = rows.changed if isinstance(rows, RowView) else {}
    out: dict[str, Row] = {}
    for chunk in chunks(ids):
        for key, values in rows.fetch(chunk, COLUMNS[1:]).items():
            out[key] = changed.get(key) or Row(key, *values)
    return out
