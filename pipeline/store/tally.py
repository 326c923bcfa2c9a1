"""What `pipeline status` needs of one checkpoint, counted by SQLite: no Row per item.

    tally = read_tally(path)      # None for an older schema: read its rows instead
    tally.counts["done"], tally.credits, tally.failures, tally.notes

On a million rows this answers in about a second, where reading every row as a `Row` took tens of
seconds and gigabytes. Several checkpoints holding rows (shards, sibling layouts) may share an item, the
newest row winning: `outputs/status` reads their rows then, as `pipeline report` does.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.store.checkpoint import COLUMNS, ID_BATCH, Row, _read_only

# Row.never_ordered, in SQL: no order was ever created for this item.
_STATE = ("CASE WHEN state IN ('pending', 'uploaded') AND COALESCE(attempts, 0) = 0 AND order_id IS NULL "
          "THEN 'new' ELSE state END")
_NEEDS = {"id", "state", "attempts", "order_id", "credits", "error"}
# `pipeline status` looks at up to this many delivered files on disk; beyond, a random sample of them
FILES_CHECKED = 50_000


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
        reviews = {"fidelity", "review", "review_reason", "reviewed_at"} <= names  # schema 4 on
        # The rows any list below names, in one pass over the table (four took 1 s more at 1M rows).
        wanted = "state = 'failed' OR (state != 'done' AND error IS NOT NULL AND error != '')"
        extra = "NULL, NULL, NULL, NULL"
        if reviews:
            wanted += " OR state = 'review' OR (review IS NOT NULL AND review != '')"
            extra = "fidelity, review, review_reason, reviewed_at"
        found = conn.execute(f"SELECT id, state, error, {extra} FROM items WHERE {wanted}").fetchall()
        found.sort()  # by id: a str sorts by code point, as SQLite's ORDER BY sorts the UTF-8 bytes
        failures = [(i, error) for i, state, error, *_ in found if state == "failed"]
        notes = [(i, state, error) for i, state, error, *_ in found if state not in ("done", "failed") and error]
        if not reviews:  # before schema 4
            return Tally(items, counts, credits, failures, notes)
        review = [(i, score, last) for i, state, _, score, last, *_ in found if state == "review"]
        decided = sorted((r for r in found if r[4]), key=lambda r: (-(r[6] or 0), r[0]))  # the newest first
        decisions = [(i, last, reason, at, state) for i, state, _, _, last, reason, at in decided]
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
                    intact: Callable[[str, int | None, int | None], bool], timeout_s: float = 30.0,
                    check_all: bool = False) -> tuple[int, int, int, bool]:
    """(done outputs, those lacking the disclosure, files looked at, whether those were a sample) of
    one checkpoint, counted by SQLite with a delivered.sqlite (store/delivered.py) attached, read-only:
    no Row per item.

    An output carries it when its record says the file as written carries the settings `key` (None:
    none to carry) and `intact(output_path, size, mtime_ns)` agrees (the caller's look at the file).
    Every record is checked. The files are looked at one by one, so with more than FILES_CHECKED
    outputs whose record carries it, and not `check_all`, only those in a random sample of
    FILES_CHECKED of the table's rows are: a look at a million files took seconds."""
    def read(conn, names: set[str]) -> tuple[int, int, int, bool]:
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
        done = "i.state = 'done' AND i.output_path IS NOT NULL AND i.output_path != ''"
        seen, carried = conn.execute(f"SELECT COUNT(*), TOTAL({recorded}) FROM items i WHERE {done}", params).fetchone()
        lacking = seen - int(carried)
        files = f"SELECT i.output_path, {size}, {mtime} FROM items i WHERE {done} AND {recorded}"
        sampled = not check_all and carried > FILES_CHECKED
        if sampled:
            lo, hi = conn.execute("SELECT MIN(rowid), MAX(rowid) FROM items").fetchone()
            picked = sorted(random.Random(hi).sample(range(lo, hi + 1), min(FILES_CHECKED, hi - lo + 1)))
            cursors = (conn.execute(f"{files} AND i.rowid IN ({', '.join('?' * len(chunk))})", (*params, *chunk))
                       for chunk in (picked[at:at + ID_BATCH] for at in range(0, len(picked), ID_BATCH)))
        else:
            cursors = iter([conn.execute(files, params)]) if carried else iter([])
        checked = 0
        for cur in cursors:
            while batch := cur.fetchmany(4000):
                for name, size, mtime in batch:
                    checked += 1
                    lacking += not intact(name, size, mtime)
        return seen, lacking, checked, sampled
    return _read_only(path, timeout_s, read, (0, 0, 0, False))
