"""Run history in the checkpoint: one `runs` row per run, so the spend of a catalog survives `--force`.

    run_id = history.begin(conn, started_at=time.time(), version="0.1.0", options={"force": True})
    history.count(conn, run_id, credits=1)      # with the item's own credit, in the same transaction
    history.end(conn, run_id, exit_code=0, elapsed_s=4.2)
    history.read(conn, limit=5).all_time_credits

An item's `credits` starts again at 0 when it is ordered anew (`--force`, a changed prompt); a run's
row keeps what that run was charged. Credits and submits are counted as they happen, so a run killed
with `kill -9` keeps what it spent; its `ended_at` and `exit_code` stay empty.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field

DDL = ("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, "
       "ended_at REAL, elapsed_s REAL, exit_code INTEGER, credits INTEGER NOT NULL DEFAULT 0, "
       "submits INTEGER NOT NULL DEFAULT 0, version TEXT, options TEXT NOT NULL DEFAULT '{}', note TEXT)")
SINCE = 3  # the checkpoint schema that brought the runs table
BEFORE_HISTORY = ("before run history: the credits items held when this checkpoint was upgraded; "
                  "what --force reruns spent before then is not known")
_COLUMNS = "id, started_at, ended_at, elapsed_s, exit_code, credits, submits, version, options, note"


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: float
    ended_at: float | None       # None: still running, or killed
    elapsed_s: float | None      # the run's own time: a confirmation question's wait is not in it
    exit_code: int | None
    credits: int                 # orders this run saw complete (1 credit each)
    submits: int                 # orders this run created
    version: str | None          # the pipeline version that ran it
    options: dict = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class History:
    runs: list[RunRecord]        # the newest first, at most the limit asked for
    total_runs: int
    all_time_credits: int        # every credit any recorded run was charged, forced reruns included
    all_time_submits: int

    def to_dict(self) -> dict:
        return {"runs": [run.to_dict() for run in self.runs], "total_runs": self.total_runs,
                "all_time_credits": self.all_time_credits, "all_time_submits": self.all_time_submits}


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Create the runs table; a checkpoint from before it gets one row holding the credits it knew of."""
    conn.execute(DDL)
    if from_version >= SINCE or conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]:
        return
    credits, submits, first = conn.execute(
        "SELECT COALESCE(SUM(credits), 0), COALESCE(SUM(attempts), 0), MIN(created_at) FROM items").fetchone()
    if credits or submits:
        conn.execute("INSERT INTO runs (started_at, ended_at, credits, submits, note) VALUES (?, ?, ?, ?, ?)",
                     (first or time.time(), time.time(), credits, submits, BEFORE_HISTORY))


def begin(conn: sqlite3.Connection, *, started_at: float, version: str, options: dict) -> int:
    cur = conn.execute("INSERT INTO runs (started_at, version, options) VALUES (?, ?, ?)",
                       (started_at, version, json.dumps(options, sort_keys=True)))
    return int(cur.lastrowid)


def count(conn: sqlite3.Connection, run_id: int, *, credits: int = 0, submits: int = 0) -> None:
    conn.execute("UPDATE runs SET credits = credits + ?, submits = submits + ? WHERE id = ?",
                 (credits, submits, run_id))


def end(conn: sqlite3.Connection, run_id: int, *, exit_code: int, elapsed_s: float | None) -> None:
    conn.execute("UPDATE runs SET ended_at = ?, exit_code = ?, elapsed_s = ? WHERE id = ?",
                 (time.time(), exit_code, elapsed_s, run_id))


def read(conn: sqlite3.Connection, limit: int) -> History:
    """The newest `limit` runs and the all-time totals.

    A checkpoint not yet upgraded (read read-only, a sibling shard's) shows the row `migrate` will add."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
        credits, submits, first = conn.execute(
            "SELECT COALESCE(SUM(credits), 0), COALESCE(SUM(attempts), 0), MIN(created_at) FROM items").fetchone()
        runs = [RunRecord(0, first or 0.0, None, None, None, credits, submits, None, {}, BEFORE_HISTORY)] \
            if credits or submits else []
        return History(runs[:limit], len(runs), credits, submits)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    total, credits, submits = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(credits), 0), COALESCE(SUM(submits), 0) FROM runs").fetchone()
    runs = [RunRecord(*row[:8], options=json.loads(row[8] or "{}"), note=row[9]) for row in rows]
    return History(runs, total, credits, submits)


def merged(histories: list[History], limit: int) -> History:
    """Several checkpoints' histories (every shard's) as one: the newest runs of all, totals summed."""
    runs = sorted((run for h in histories for run in h.runs), key=lambda run: run.started_at, reverse=True)
    return History(runs[:limit], sum(h.total_runs for h in histories),
                   sum(h.all_time_credits for h in histories), sum(h.all_time_submits for h in histories))
