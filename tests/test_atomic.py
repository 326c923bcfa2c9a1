"""Atomic writes: whole files or nothing, never a clash with a temp file left by a killed run."""
from __future__ import annotations

import os
import stat

import pytest

from pipeline.store import atomic
from pipeline.errors import OutputError


def test_writes_whole_file_and_returns_its_stat(tmp_path):
    target = tmp_path / "deep" / "er" / "a.jpg"  # missing directories are made
    got = atomic.write_atomically(target, b"x" * 100_000)
    assert target.read_bytes() == b"x" * 100_000
    now = target.stat()
    assert (got.st_size, got.st_mtime_ns, got.st_ino) == (now.st_size, now.st_mtime_ns, now.st_ino)
    assert not list(tmp_path.rglob(".part-*"))


def test_mode_follows_the_umask_like_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_atomically(tmp_path / "a.jpg", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.jpg").stat().st_mode) == 0o644


def test_a_stale_temp_with_our_name_is_stepped_over(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_serial", iter(range(10)))
    stale = tmp_path / f".part-{os.getpid()}-0"  # as if a killed process with our pid left it
    stale.write_bytes(b"old")
    atomic.write_atomically(tmp_path / "a.jpg", b"new")
    assert (tmp_path / "a.jpg").read_bytes() == b"new" and stale.read_bytes() == b"old"
    assert atomic.remove_stale_temps([tmp_path, tmp_path / "missing"]) == 1
    assert not stale.exists() and (tmp_path / "a.jpg").exists()


def test_a_failed_writer_leaves_nothing(tmp_path):
    def writer(path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        atomic.write_with(tmp_path / "r.csv", writer)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OutputError, match="cannot write .*a.jpg"):
        atomic.write_atomically(tmp_path / "file" / "a.jpg", b"1")


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 1024 * 1024 + 7])
def test_read_file_reads_the_whole_file_or_its_first_bytes(tmp_path, size):
    from pipeline.store.atomic import read_file

    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert read_file(tmp_path / "f") == data
    assert read_file(str(tmp_path / "f"), 100) == data[:100]
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        read_file(tmp_path)
