"""What each delivered file carries, so an unchanged rerun need not read it: `<state.dir>/delivered.sqlite`.

    store = Delivered.open(cfg.state_dir)
    store.disclosed()["sku-1.jpg"]             # Disclosed(sha256, key, pixels)
    store.save_disclosed([("sku-1.jpg", Disclosed(...))])

Two tables: `disclosed` (an output's sha256 as written, the disclosure settings it carries, and an
id of its image data, so a file whose metadata was edited by hand is still known as ours) and
`renditions` (each rendition file: the output's sha256 it was made from, its settings, its size and
mtime). Kept apart from the checkpoint: losing it costs one read of every file, never a credit.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, NamedTuple

from pipeline.errors import CheckpointError

NAME = "delivered.sqlite"
_DDL = (
    "CREATE TABLE IF NOT EXISTS disclosed (name TEXT PRIMARY KEY, sha256 TEXT, key TEXT, pixels TEXT)",
    "CREATE TABLE IF NOT EXISTS renditions (rendition TEXT, name TEXT, source_sha256 TEXT, spec TEXT, "
    "path TEXT, size INTEGER, mtime_ns INTEGER, PRIMARY KEY (rendition, name))",
)


class Disclosed(NamedTuple):  # NamedTuples: 100k of them are read on every rerun
    sha256: str    # of the file as written
    key: str       # the disclosure settings it carries (plan.delivery.settings_key)
    pixels: str    # media.xmp.pixels_id: its image data


class Made(NamedTuple):
    source_sha256: str  # the output it was made from
    spec: str           # the rendition's settings and disclosure
    path: str           # relative to output.dir
    size: int
    mtime_ns: int | None  # None in a bucket


class Delivered:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    @classmethod
    def open(cls, state_dir: Path) -> "Delivered":
        path = Path(state_dir) / NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            for ddl in _DDL:
                conn.execute(ddl)
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointError(f"cannot open {path}: {exc}") from None
        return cls(conn)

    @staticmethod
    def read(state_dir: Path) -> tuple[dict[str, Disclosed], dict[tuple[str, str], Made]]:
        """Both tables of a state directory another run may be writing (status): read-only, {} if none."""
        path = Path(state_dir) / NAME
        if not path.exists():
            return {}, {}
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error:
            return {}, {}
        try:
            return Delivered(conn).disclosed(), Delivered(conn).made()
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        finally:
            conn.close()

    def disclosed(self) -> dict[str, Disclosed]:
        return {name: Disclosed(sha, key, pixels) for name, sha, key, pixels in
                self._conn.execute("SELECT name, sha256, key, pixels FROM disclosed")}

    def disclosed_of(self, names: list[str]) -> dict[str, Disclosed]:
        """The records of these files only (a batch of a rerun's million), one query."""
        if not names:
            return {}
        marks = ", ".join("?" * len(names))
        return {name: Disclosed(sha, key, pixels) for name, sha, key, pixels in self._conn.execute(
            f"SELECT name, sha256, key, pixels FROM disclosed WHERE name IN ({marks})", names)}

    def save_disclosed(self, entries: Iterable[tuple[str, Disclosed]]) -> None:
        self._many("INSERT OR REPLACE INTO disclosed VALUES (?, ?, ?, ?)",
                   [(name, d.sha256, d.key, d.pixels) for name, d in entries])

    def made(self) -> dict[tuple[str, str], Made]:
        return {(rendition, name): Made(sha, spec, path, size, mtime) for rendition, name, sha, spec, path, size, mtime
                in self._conn.execute("SELECT rendition, name, source_sha256, spec, path, size, mtime_ns FROM renditions")}

    def save_made(self, entries: Iterable[tuple[str, str, Made]]) -> None:
        self._many("INSERT OR REPLACE INTO renditions VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(r, name, m.source_sha256, m.spec, m.path, m.size, m.mtime_ns) for r, name, m in entries])

    def forget_made(self, keys: Iterable[tuple[str, str]]) -> None:
        self._many("DELETE FROM renditions WHERE rendition = ? AND name = ?", list(keys))

    def _many(self, sql: str, params: list[tuple]) -> None:
        if not params:
            return
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(sql, params)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot record delivered files: {exc}") from None

    def close(self) -> None:
        self._conn.close()
