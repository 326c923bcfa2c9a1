"""SQLite state: one row per item, one transition per commit (grouped per event-loop tick).

    ckpt = Checkpoint.open(cfg.checkpoint_path)
    row = ckpt.rows()["sku-1"]
    ckpt.save(row, state="submitted", order_id="abc")   # committed within the current loop tick

WAL mode with synchronous=NORMAL: a committed transition survives kill -9 of the process (the
WAL lives in the OS page cache); on power loss the newest transitions may be lost, never
the database's consistency.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass, fields
from pathlib import Path

from pipeline.errors import CheckpointError
from pipeline.store import history
from pipeline.store.readonly import APPLICATION_ID, read_only as _read_only
from pipeline.run.states import State, check_move

SCHEMA_VERSION = 4  # 2: status checks per order (polls, checked_at, seen_init_s) and order_times; 3: runs;
# 4: fidelity and review (state `review`, the fidelity_* and review_* columns, added in place below)

STATES = tuple(State)


@dataclass(eq=False, slots=True)
class Row:
    """In-memory mirror of one `items` row; change it only through Checkpoint.save()."""

    id: str
    fingerprint: str
    state: str = State.PENDING
    image_sha256: str | None = None
    api_id: str | None = None          # which API instance the upload/order below belongs to
    image_url: str | None = None
    uploaded_at: float | None = None
    order_id: str | None = None
    submitted_at: float | None = None
    max_polls: int | None = None
    polls: int = 0                     # status checks of the current order, over all runs
    checked_at: float | None = None    # its last status check
    seen_init_s: float | None = None   # seconds after submit it was last seen still processing
    output_url: str | None = None
    output_path: str | None = None
    output_sha256: str | None = None
    output_size: int | None = None
    output_mtime_ns: int | None = None
    attempts: int = 0                  # orders created for this item (all runs)
    failed_orders: int = 0             # orders that ended `failed` since the last reset
    credits: int = 0                   # orders that ended `active`
    error: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    fidelity: float | None = None      # 0..1, of the output now on disk (media/fidelity.py)
    fidelity_ssim: float | None = None
    fidelity_delta_e: float | None = None
    fidelity_iou: float | None = None
    fidelity_note: str | None = None   # why there is no score (a busy source), or none
    review: str | None = None          # the last decision in `pipeline review`: approved or rejected
    review_reason: str | None = None
    reviewed_at: float | None = None
    rebuys: int = 0                    # orders bought again after a rejection

    @property
    def never_ordered(self) -> bool:
        """No order was ever created for this item (say, the run that listed it stopped on a bad key)."""
        return self.state in (State.PENDING, State.UPLOADED) and not self.attempts and self.order_id is None


COLUMNS = [f.name for f in fields(Row)]
_FIELDS = frozenset(COLUMNS)
_TYPES = {"attempts": "INTEGER NOT NULL DEFAULT 0", "polls": "INTEGER NOT NULL DEFAULT 0",
          "checked_at": "REAL", "seen_init_s": "REAL", "failed_orders": "INTEGER NOT NULL DEFAULT 0",
          "credits": "INTEGER NOT NULL DEFAULT 0", "max_polls": "INTEGER", "output_size": "INTEGER",
          "output_mtime_ns": "INTEGER", "uploaded_at": "REAL", "submitted_at": "REAL",
          "created_at": "REAL", "updated_at": "REAL", "finished_at": "REAL", "fidelity": "REAL",
          "fidelity_ssim": "REAL", "fidelity_delta_e": "REAL", "fidelity_iou": "REAL", "reviewed_at": "REAL",
          "rebuys": "INTEGER NOT NULL DEFAULT 0"}
_DDL = [
    "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, "
    + ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS[1:]) + ")",
    "CREATE TABLE IF NOT EXISTS uploads (key TEXT PRIMARY KEY, image_url TEXT NOT NULL, "
    "uploaded_at REAL NOT NULL, content_type TEXT, size INTEGER)",
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)",
    # Every order seen done: its time lies in (lo_s, hi_s]; the next run's timing starts from these.
    "CREATE TABLE IF NOT EXISTS order_times (api TEXT NOT NULL, lo_s REAL NOT NULL, hi_s REAL NOT NULL, "
    "at REAL NOT NULL)",
]
ORDER_TIMES_KEPT = 5000
ID_BATCH = 900  # ids a query of `read_rows` asks for (SQLite's default limit of variables is 32,766)
RUNS_SHOWN = 5  # runs `pipeline status` and the report list by default


class Checkpoint:
    """The run's durable state. Writes execute at once and commit in groups, once per loop tick."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path
        self._commit_pending = False
        self._sql_cache: dict[tuple[str, ...], str] = {}
        self.failure: CheckpointError | None = None
        self._closed = False
        self._run_id: int | None = None  # the run whose credits and submits save() counts
        self._counted: dict[int, list[int]] = {}  # run id -> [credits, submits] not written yet

    @classmethod
    def open(cls, path: Path) -> "Checkpoint":
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists() and path.stat().st_size > 0
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointError(f"cannot open checkpoint {path}: {exc}") from None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if existed and app_id != APPLICATION_ID:
                raise CheckpointError(f"{path} is not a pipeline checkpoint (a foreign SQLite file); "
                                      "move it away or choose another output.dir")
            if existed and version > SCHEMA_VERSION:
                raise CheckpointError(f"{path} was written by a newer pipeline (schema {version})")
            if existed:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise CheckpointError(f"checkpoint {path} is corrupt ({check}); "
                                          "restore it or move it away to start over")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN")
            for ddl in _DDL:
                conn.execute(ddl)
            have = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
            for column in COLUMNS:  # a checkpoint of an older schema gains the new columns in place
                if column not in have:
                    conn.execute(f"ALTER TABLE items ADD COLUMN {column} {_TYPES.get(column, 'TEXT')}")
            history.migrate(conn, version if existed else SCHEMA_VERSION)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CheckpointError(f"{path} is not a usable pipeline checkpoint ({exc}); "
                                  "move it away or choose another output.dir") from None
        except CheckpointError:
            conn.close()
            raise
        return cls(conn, path)

    # -- items ------------------------------------------------------------------

    @staticmethod
    def read_rows(path: Path, timeout_s: float = 30.0, ids: Collection[str] | None = None) -> dict[str, Row]:
        """Every row of a checkpoint another run may be writing now (a sibling shard's), or only those
        of `ids`: read-only, waiting out its writes, never migrating or locking it."""
        def rows(conn: sqlite3.Connection, names: set[str]) -> dict[str, Row]:
            cols = ", ".join(c if c in names else "NULL" for c in COLUMNS)  # an older schema lacks some
            if ids is None:
                return {r[0]: Row(*r) for r in conn.execute(f"SELECT {cols} FROM items")}
            wanted, found = list(ids), {}
            for start in range(0, len(wanted), ID_BATCH):  # a shard's share, not the whole table
                chunk = wanted[start:start + ID_BATCH]
                found.update((r[0], Row(*r)) for r in conn.execute(
                    f"SELECT {cols} FROM items WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
            return found
        return _read_only(path, timeout_s, rows, {})

    @staticmethod
    def read_history(path: Path, limit: int = RUNS_SHOWN, timeout_s: float = 30.0) -> history.History:
        """The run history of a checkpoint another run may be writing now, read-only as `read_rows`."""
        return _read_only(path, timeout_s, lambda conn, names: history.read(conn, limit),
                          history.History([], 0, 0, 0))

    @staticmethod
    def read_file_hashes(path: Path, timeout_s: float = 30.0) -> dict[str, tuple[int, int, str]]:
        """The stat cache of a checkpoint (path or URL -> size, mtime or version, sha256), read-only."""
        return _read_only(path, timeout_s, lambda conn, names: {
            p: (s, m, h) for p, s, m, h in conn.execute("SELECT path, size, mtime_ns, sha256 FROM files")}, {})

    def rows(self) -> dict[str, Row]:
        cur = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM items")
        return {r[0]: Row(*r) for r in cur}

    def query(self, sql: str, params: tuple) -> sqlite3.Cursor:
        """A read on the run's own connection (store/rowview.py): it sees this run's writes."""
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from None

    def insert(self, rows: list[Row]) -> None:
        """Insert or replace whole rows in one transaction (used when syncing the manifest)."""
        now = time.time()
        for row in rows:
            row.created_at = row.created_at or now
            row.updated_at = now
        marks = ", ".join("?" * len(COLUMNS))
        self._write_many(f"INSERT OR REPLACE INTO items ({', '.join(COLUMNS)}) VALUES ({marks})",
                         [tuple(getattr(r, c) for c in COLUMNS) for r in rows])

    def save(self, row: Row, **changes) -> None:
        """Apply `changes` to `row` and persist them; committed by the end of this loop tick.

        An unknown field (TypeError) or a move not in states.TRANSITIONS (IllegalTransition) is a bug
        in the caller, and raises before anything is written."""
        if self.failure:
            raise self.failure
        if not _FIELDS.issuperset(changes):
            raise TypeError(f"Checkpoint.save: no such field {sorted(set(changes) - _FIELDS)}")
        if "state" in changes:
            check_move(row.state, changes["state"])
        if self._run_id is not None and ("credits" in changes or "attempts" in changes):
            self._count_run(row, changes)
        changes["updated_at"] = time.time()
        keys = tuple(changes)
        sql = self._sql_cache.get(keys)
        if sql is None:
            sql = f"UPDATE items SET {', '.join(f'{k} = ?' for k in keys)} WHERE id = ?"
            self._sql_cache[keys] = sql
        for key, value in changes.items():
            setattr(row, key, value)
        # The write path of every transition, inlined (#21 §5): executed at once, committed this tick.
        conn = self._conn
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN")
            conn.execute(sql, (*changes.values(), row.id))
        except sqlite3.Error as exc:
            self.failure = CheckpointError(f"cannot write checkpoint {self.path}: {exc}")
            raise self.failure from None
        if not self._commit_pending:
            self._schedule_commit()

    # -- run history (store/history.py) ---------------------------------------------

    def begin_run(self, *, started_at: float, version: str, options: dict) -> int:
        """Start this run's history row; from now on save() counts the credits and orders it sees."""
        found: list[int] = []
        self._in_transaction(lambda: found.append(history.begin(
            self._conn, started_at=started_at, version=version, options=options)))
        self.flush()
        self._run_id = found[0]
        return self._run_id

    def end_run(self, *, exit_code: int, elapsed_s: float | None) -> None:
        if self._run_id is not None:
            run_id, self._run_id = self._run_id, None
            self._in_transaction(lambda: history.end(self._conn, run_id, exit_code=exit_code, elapsed_s=elapsed_s))
            self.flush()

    def history(self, limit: int = RUNS_SHOWN) -> history.History:
        """The newest `limit` runs and the all-time totals (every credit charged, forced reruns too)."""
        try:
            self._write_counts()  # this tick's, not committed yet: the run's own reads see them
            return history.read(self._conn, limit)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read the run history in {self.path}: {exc}") from None

    def _write_counts(self) -> None:
        """The credits and orders save() counted, into the open transaction."""
        counted, self._counted = self._counted, {}
        for run_id, (credits, submits) in counted.items():
            history.count(self._conn, run_id, credits=credits, submits=submits)

    def _count_run(self, row: Row, changes: dict) -> None:
        # An order's credit and its creation are counted in the same transaction as the item's row.
        credits = changes.get("credits", row.credits) - row.credits
        submits = changes.get("attempts", row.attempts) - row.attempts
        if credits > 0 or submits > 0:  # written by this tick's commit: one UPDATE a tick (_write_counts)
            was = self._counted.get(self._run_id, (0, 0))
            self._counted[self._run_id] = [was[0] + max(0, credits), was[1] + max(0, submits)]

    # -- uploads shared by identical images --------------------------------------

    def upload(self, key: str) -> tuple[str, float] | None:
        found = self._conn.execute("SELECT image_url, uploaded_at FROM uploads WHERE key = ?",
                                   (key,)).fetchone()
        return (found[0], found[1]) if found else None

    def save_upload(self, key: str, image_url: str, uploaded_at: float, content_type: str,
                    size: int) -> None:
        self._execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)",
                      (key, image_url, uploaded_at, content_type, size))

    def forget_upload(self, key: str, image_url: str) -> None:
        """Drop a refused imageUrl; a fresh upload another item already made for the key stays."""
        self._execute("DELETE FROM uploads WHERE key = ? AND image_url = ?", (key, image_url))

    # -- order times, the prior of the next run's check schedule -------------------

    def order_times(self, api: str, limit: int = ORDER_TIMES_KEPT) -> list[tuple[float, float]]:
        """The newest `limit` (lo_s, hi_s] bounds of finished orders of this kind of API, oldest first."""
        cur = self._conn.execute("SELECT lo_s, hi_s FROM order_times WHERE api = ? ORDER BY rowid DESC "
                                 "LIMIT ?", (api, limit))
        return cur.fetchall()[::-1]

    def save_order_time(self, api: str, lo_s: float, hi_s: float) -> None:
        self._execute("INSERT INTO order_times VALUES (?, ?, ?, ?)", (api, lo_s, hi_s, time.time()))

    def trim_order_times(self) -> None:
        self._execute("DELETE FROM order_times WHERE rowid <= (SELECT MAX(rowid) FROM order_times) - ?",
                      (ORDER_TIMES_KEPT,))

    # -- stat cache, so an unchanged catalog is not re-hashed on every run --------

    def file_hashes(self) -> dict[str, tuple[int, int, str]]:
        return {p: (s, m, h) for p, s, m, h in self._conn.execute("SELECT * FROM files")}

    def save_file_hashes(self, entries: list[tuple[str, int, int, str]]) -> None:
        if entries:
            self._write_many("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", entries)

    # -- commits ------------------------------------------------------------------

    def flush(self) -> None:
        """Commit now whatever is pending."""
        if self._conn.in_transaction:
            try:
                self._write_counts()
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.failure = CheckpointError(f"cannot write checkpoint {self.path}: {exc}")
                raise self.failure from None
        self._commit_pending = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        already_failed = self.failure is not None
        try:
            self.flush()
        except CheckpointError:
            if not already_failed:
                raise  # a new failure: the last transitions may be lost, say so
        finally:
            self._conn.close()

    def _execute(self, sql: str, params: tuple) -> None:
        self._write(self._conn.execute, sql, params)
        self._schedule_commit()

    def _write_many(self, sql: str, params: list[tuple]) -> None:
        self._write(self._conn.executemany, sql, params)
        self.flush()

    def _write(self, run, sql: str, params) -> None:
        self._in_transaction(lambda: run(sql, params))

    def _in_transaction(self, action) -> None:
        try:
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            action()
        except sqlite3.Error as exc:
            self.failure = CheckpointError(f"cannot write checkpoint {self.path}: {exc}")
            raise self.failure from None

    def _schedule_commit(self) -> None:
        if self._commit_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._commit_pending = True
        loop.call_soon(self._commit_quietly)

    def _commit_quietly(self) -> None:
        try:
            self.flush()
        except CheckpointError:
            pass  # kept in self.failure; the next save() raises it at an item boundary
