"""What `pipeline status` needs of one checkpoint, counted by SQLite: no Row per item.

    tally = read_tally(path)      # None for an older schema: read its rows instead
    tally.counts["done"], tally.credits, tally.failures, tally.notes

On a million rows this answers in about a second, where reading every row as a `Row` took tens of
seconds and gigabytes. Several checkpoints holding rows (shards, sibling layouts) may share an item, the
newest row winning: `outputs/status` reads their rows then, as `pipeline report` does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.store.checkpoint import COLUMNS, Row, _read_only

# Row.never_ordered, in SQL: no order was ever created for this item.
_STATE = ("CASE WHEN state IN ('pending', 'uploaded') AND COALESCE(attempts, 0) = 0 AND order_id IS NULL "
          "THEN 'new' ELSE state END")
_NEEDS = {"id", "state", "attempts", "order_id", "credits", "error"}


@dataclass(frozen=True)
class Tally:
    items: int
    counts: dict[str, int]             # by state, never-ordered items as "new"
    credits: int                       # summed over the items
    failures: list[tuple[str, str | None]]           # (id, error) of failed items, by id
    notes: list[tuple[str, str, str]]  # (id, state, error) of items neither done nor failed with an error, by id
    review: list[tuple[str, float | None, str | None]] = field(default_factory=list)  # held: (id, fidelity, review)
    # (id, decision, reason, at, state) of every item decided in `pipeline review`, the newest first
    decisions: list[tuple[str, str, str | None, float | None, str]] = field(default_factory=list)


def read_tally(path: Path, timeout_s: float = 30.0) -> Tally | None:
    """Counts, credits, failures and notes of one checkpoint, read-only (a run may be writing it)."""
    def read(conn, names: set[str]) -> Tally | None:
        if not _NEEDS <= names:
            return None
        counts, items, credits = {}, 0, 0
        for state, count, spent in conn.execute(
                f"SELECT {_STATE}, COUNT(*), SUM(COALESCE(credits, 0)) FROM items GROUP BY 1"):
            counts[state] = count
            items += count
            credits += spent or 0
        # ORDER BY id compares UTF-8 bytes, which orders as Python orders the str: by code point
        failures = conn.execute("SELECT id, error FROM items WHERE state = 'failed' ORDER BY id").fetchall()
        notes = conn.execute("SELECT id, state, error FROM items WHERE state NOT IN ('done', 'failed') "
                             "AND error IS NOT NULL AND error != '' ORDER BY id").fetchall()
        if not {"fidelity", "review", "review_reason", "reviewed_at"} <= names:  # before schema 4
            return Tally(items, counts, credits, failures, notes)
        review = conn.execute("SELECT id, fidelity, review FROM items WHERE state = 'review' ORDER BY id").fetchall()
        decisions = conn.execute("SELECT id, review, review_reason, reviewed_at, state FROM items WHERE review IS NOT "
                                 "NULL AND review != '' ORDER BY COALESCE(reviewed_at, 0) DESC, id").fetchall()
        return Tally(items, counts, credits, failures, notes, review, decisions)
    return _read_only(path, timeout_s, read, Tally(0, {}, 0, [], []))


def done_rows(path: Path, timeout_s: float = 30.0) -> list[Row]:
    """The done rows that name an output, read-only: what the disclosure count of `status` checks."""
    def read(conn, names: set[str]) -> list[Row]:
        cols = [c if c in names else "NULL" for c in COLUMNS]
        return [Row(*r) for r in conn.execute(
            f"SELECT {', '.join(cols)} FROM items WHERE state = 'done' AND output_path IS NOT NULL "
            "AND output_path != ''")]
    return _read_only(path, timeout_s, read, [])



def count_disclosed(path: Path, delivered: Path | None, key: str | None,
                    intact: Callable[[str, int | None, int | None], bool], timeout_s: float = 30.0) -> tuple[int, int]:
    """(done outputs, those lacking the disclosure) of one checkpoint, its rows streamed from SQLite
    and joined with a delivered.sqlite (store/delivered.py), read-only: no Row per item.

    An output carries it when its record says the file as written carries the settings `key` (None:
    none to carry) and `intact(output_path, size, mtime_ns)` agrees (the caller's look at the file)."""
    def read(conn, names: set[str]) -> tuple[int, int]:
        recorded = "0"
        params: tuple = ()
        if delivered is not None and key is not None:
            conn.execute("COMMIT")  # ATTACH is refused inside a transaction; the rows are read in one below
            conn.execute("ATTACH DATABASE ? AS delivered", (f"{delivered.resolve().as_uri()}?mode=ro",))
            conn.execute("BEGIN")
            recorded = ("EXISTS (SELECT 1 FROM delivered.disclosed d WHERE d.name = i.output_path AND d.key = ? "
                        "AND d.sha256 = i.output_sha256)")
            params = (key,)
        size, mtime = (f"i.{c}" if c in names else "NULL" for c in ("output_size", "output_mtime_ns"))  # older schemas
        if "output_sha256" not in names:
            recorded, params = "0", ()
        cur = conn.execute(f"SELECT i.output_path, {size}, {mtime}, {recorded} FROM items i "
                           "WHERE i.state = 'done' AND i.output_path IS NOT NULL AND i.output_path != ''", params)
        seen = lacking = 0
        while batch := cur.fetchmany(4000):
            for name, size, mtime, ok in batch:
                seen += 1
                lacking += not (ok and intact(name, size, mtime))
        return seen, lacking
    return _read_only(path, timeout_s, read, (0, 0))
