"""SQLite checkpoint: durability of transitions, refusal of foreign or corrupt files, a sibling read mid-creation."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import threading

import pytest

from pipeline.store import history
from pipeline.store.checkpoint import ID_BATCH, Checkpoint, Row
from pipeline.store.state_dirs import merged_rows
from pipeline.errors import CheckpointError


@pytest.fixture
def checkpoint(tmp_path):
    ckpt = Checkpoint.open(tmp_path / "state" / "checkpoint.sqlite")
    yield ckpt
    ckpt.close()


def test_rows_round_trip_across_reopen(tmp_path, checkpoint):
    checkpoint.insert([Row(id="a", fingerprint="f1", state="uploaded"), Row(id="b", fingerprint="f2")])
    row = checkpoint.rows()["a"]
    checkpoint.save(row, state="submitted", order_id="o-1", attempts=1)
    checkpoint.close()
    again = Checkpoint.open(tmp_path / "state" / "checkpoint.sqlite")
    rows = again.rows()
    assert rows["a"].state == "submitted" and rows["a"].order_id == "o-1" and rows["a"].attempts == 1
    assert rows["b"].state == "pending"
    again.close()


async def test_saves_in_one_loop_tick_commit_together_and_soon(tmp_path, checkpoint):
    checkpoint.insert([Row(id=str(i), fingerprint="f", state="uploaded") for i in range(100)])
    rows = checkpoint.rows()
    for row in rows.values():
        checkpoint.save(row, state="submitted", order_id=f"o-{row.id}")
    await asyncio.sleep(0)  # the commit runs on the next tick
    await asyncio.sleep(0)
    other = sqlite3.connect(checkpoint.path)
    committed = other.execute("SELECT count(*) FROM items WHERE order_id IS NOT NULL").fetchone()[0]
    other.close()
    assert committed == 100


def test_uploads_are_shared_by_key(checkpoint):
    checkpoint.save_upload("api|sha", "http://cdn/x.jpeg", 123.0, "image/jpeg", 10)
    assert checkpoint.upload("api|sha") == ("http://cdn/x.jpeg", 123.0)
    checkpoint.forget_upload("api|sha", "http://cdn/older.jpeg")  # refused: an older URL, already replaced
    assert checkpoint.upload("api|sha") == ("http://cdn/x.jpeg", 123.0)
    checkpoint.forget_upload("api|sha", "http://cdn/x.jpeg")
    assert checkpoint.upload("api|sha") is None


def test_an_older_checkpoint_gains_the_new_columns_in_place(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    conn = sqlite3.connect(path)  # schema 1, as 0.1 wrote it: no polls, checked_at, seen_init_s
    conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, fingerprint TEXT, state TEXT, order_id TEXT)")
    conn.execute("INSERT INTO items (id, fingerprint, state, order_id) VALUES ('a', 'f', 'submitted', 'o1')")
    conn.execute("PRAGMA application_id=1280856140")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    ckpt = Checkpoint.open(path)
    try:
        row = ckpt.rows()["a"]
        assert (row.state, row.order_id, row.polls, row.checked_at) == ("submitted", "o1", 0, None)
        ckpt.save(row, polls=3, checked_at=10.0, seen_init_s=4.5)
        ckpt.save_order_time("lightx", 1.0, 2.0)
        ckpt.flush()
        assert ckpt.rows()["a"].polls == 3 and ckpt.order_times("lightx") == [(1.0, 2.0)]
        assert ckpt.order_times("sandbox") == []
    finally:
        ckpt.close()


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE stuff (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CheckpointError, match="not a pipeline checkpoint"):
        Checkpoint.open(path)


def test_garbage_file_is_refused_not_restarted(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(CheckpointError, match="not a usable pipeline checkpoint"):
        Checkpoint.open(path)
    assert path.stat().st_size == 8192  # left as it was, for the user to inspect


def test_corrupted_pages_are_reported(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    ckpt = Checkpoint.open(path)
    ckpt.insert([Row(id=f"item-{i}", fingerprint="f" * 64) for i in range(2000)])
    ckpt.close()
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data) - 4096, 4096):
        data[offset + 100: offset + 400] = os.urandom(300)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|not a usable"):
        Checkpoint.open(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="cannot open checkpoint|not a usable"):
            Checkpoint.open(ro / "checkpoint.sqlite")
    finally:
        ro.chmod(0o700)


# -- a sibling's checkpoint read while its run is creating it (the race 161b32a fixed) -----------------

class _HookedConnection(sqlite3.Connection):
    """Runs `hook` once, right after the reader has fetched the checkpoint's application id."""
    hook = staticmethod(lambda: None)

    def execute(self, sql, *args):
        cursor = super().execute(sql, *args)
        return _FetchThenHook(cursor, type(self).hook) if sql == "PRAGMA application_id" else cursor


class _FetchThenHook:
    def __init__(self, cursor, hook):
        self._cursor, self._hook = cursor, hook

    def fetchone(self):
        row = self._cursor.fetchone()  # the statement is done and reset: only a transaction holds a snapshot
        self._hook()
        return row


@pytest.mark.parametrize("read, nothing", [
    (Checkpoint.read_rows, {}),
    (lambda path: Checkpoint.read_history(path).total_runs, 0),
    (Checkpoint.read_file_hashes, {}),
])
def test_a_sibling_caught_half_created_reads_as_empty_not_foreign(tmp_path, monkeypatch, read, nothing):
    path = tmp_path / "shard-1-of-2" / "checkpoint.sqlite"
    half_created, release = threading.Event(), threading.Event()
    real_migrate = history.migrate

    def migrate_then_wait(conn, version):  # inside the creating run's transaction: tables there, no id yet
        real_migrate(conn, version)
        half_created.set()
        assert release.wait(60), "the reader never let the sibling go on"

    monkeypatch.setattr(history, "migrate", migrate_then_wait)
    made: list[Checkpoint] = []
    sibling = threading.Thread(target=lambda: made.append(Checkpoint.open(path)), daemon=True)
    sibling.start()
    assert half_created.wait(60), "the sibling never started creating its checkpoint"

    def commit_the_sibling() -> None:  # between the reader's header and its tables
        release.set()
        sibling.join(60)
        assert made, "the sibling did not finish creating its checkpoint"

    real_connect = sqlite3.connect
    _HookedConnection.hook = staticmethod(commit_the_sibling)
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: real_connect(*a, factory=_HookedConnection, **kw))
    try:
        assert read(path) == nothing  # seen as it was before the sibling's commit: being created
    finally:
        release.set()
        sibling.join(60)
        monkeypatch.undo()
        for ckpt in made:
            ckpt.close()
    assert made and read(path) == nothing  # and now as it is: a new, empty pipeline checkpoint


def test_read_rows_of_some_ids_reads_only_those_in_batches(tmp_path):
    # A shard copying in what an unsharded run holds asks for its own share only (plan/siblings), a
    # batch of ids a query, never every row of a million-row checkpoint.
    path = tmp_path / "state" / "checkpoint.sqlite"
    ckpt = Checkpoint.open(path)
    ckpt.insert([Row(id=f"item-{i}", fingerprint="f", state="done") for i in range(3 * ID_BATCH)])
    ckpt.close()
    wanted = {f"item-{i}" for i in range(0, 3 * ID_BATCH, 2)} | {"not-there"}
    rows = Checkpoint.read_rows(path, ids=wanted)
    assert set(rows) == wanted - {"not-there"}
    assert all(r.state == "done" and r.id == key for key, r in rows.items())
    assert len(Checkpoint.read_rows(path)) == 3 * ID_BATCH
    assert merged_rows([path], ["item-1", "item-2"]).keys() == {"item-1", "item-2"}
