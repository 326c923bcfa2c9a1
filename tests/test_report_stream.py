"""`pipeline report` of a big catalog reads the checkpoints a batch at a time (store/rowview.ReadView) and
lists output.dir compactly (outputs/listing): the same table and pages, byte for byte, as from the rows
held in memory (#21). Correctness only: benchmarks/scale.py measures time and memory."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sqlite3

from PIL import Image

from helpers import results_sample
from pipeline.outputs import listing, publish
from pipeline.store import rowview
from pipeline.store.checkpoint import COLUMNS, Checkpoint
from pipeline.store.rowview import ReadView, RowView
from pipeline.store.state_dirs import merged_rows

AWKWARD = 'a "quoted", comma\nand newline'


def _two_checkpoints(cfg, rows: dict) -> list:
    """The rows split over the unsharded checkpoint and a shard's; every 7th in the other one too, an
    older and failed copy, so only the newest-row rule (not "first" or "last" wins) shows the right one."""
    paths = [cfg.state_dir / "checkpoint.sqlite", cfg.state_dir / "shard-0-of-2" / "checkpoint.sqlite"]
    values = list(rows.values())
    parts: list[list] = [values[::2], values[1::2]]
    stale: list[list] = [[], []]
    for n in range(0, len(values), 7):  # an even one's stale copy in the shard's, an odd one's in the other
        stale[1 - n % 2].append(dataclasses.replace(values[n], state="failed", error="an older attempt"))
    for path, part, old in zip(paths, parts, stale):
        ckpt = Checkpoint.open(path)
        try:
            ckpt.insert(part + old)
        finally:
            ckpt.close()
        with sqlite3.connect(path) as conn:  # the stale copies: written long before the others
            conn.executemany("UPDATE items SET updated_at = 1.0 WHERE id = ?", [(row.id,) for row in old])
    assert stale[0] and stale[1]
    return paths


def test_a_read_view_is_merged_rows_read_a_batch_at_a_time(tmp_path, monkeypatch):
    cfg, manifest, rows = results_sample(tmp_path, 2000, AWKWARD)
    paths = _two_checkpoints(cfg, rows)
    monkeypatch.setattr(rowview, "BATCH", 97)
    merged = merged_rows(paths)
    base = {key: row for key, row in rows.items() if key.endswith("3")}
    only_base = dataclasses.replace(next(iter(rows.values())), id="from-the-bucket")
    with ReadView(paths, base={**base, only_base.id: only_base}) as view:
        ids = [item.id for item in manifest.items] + ["nope", only_base.id]
        got = {}
        for chunk in rowview.chunks(ids):
            got.update(view.fetch(chunk, COLUMNS[1:]))
        want = {key: tuple(getattr(row, c) for c in COLUMNS[1:]) for key, row in merged.items()}
        want[only_base.id] = tuple(getattr(only_base, c) for c in COLUMNS[1:])  # a checkpoint's row wins over base
        assert got == want
        assert [row.state for row in (view[k] for k in list(merged)[:50])] == [merged[k].state for k in list(merged)[:50]]
        assert set(view) == {*merged, only_base.id} and len(view) == len(merged) + 1
        assert "nope" not in view and only_base.id in view and view.get("nope") is None
        assert view.summary() is None  # base rows: no query sums them up, so no stamp trusts them
    empty = cfg.state_dir / "shard-1-of-2" / "checkpoint.sqlite"
    Checkpoint.open(empty).close()  # as a dry run of a shard leaves it
    # One checkpoint holding rows: the summary, and so the stamps' digest, its own run makes.
    with ReadView([paths[0], empty]) as one:
        ckpt = Checkpoint.open(paths[0])
        try:
            assert one.summary() == RowView(ckpt).summary() and one.summary()
        finally:
            ckpt.close()


def _outputs(out) -> dict[str, str]:
    """sha256 of every file under output.dir but state.dir, the report's clock line left out."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and ".pipeline" not in path.parts:
            data = path.read_bytes()
            if path.suffix == ".html":
                data = re.sub(rb"generated [^<]*<", b"generated <", data)
            found[str(path.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return found


def test_pipeline_reports_table_and_pages_are_the_in_memory_ones_byte_for_byte(tmp_path, monkeypatch):
    cfg, manifest, rows = results_sample(tmp_path, 3000, AWKWARD)
    cfg = dataclasses.replace(cfg, config_path=tmp_path / "config.yaml")
    out = cfg.output.dir
    (tmp_path / "images").mkdir()
    for k in range(300):
        if k % 7:  # some inputs missing
            Image.new("RGB", (40 + k % 3 * 300, 40), (k, 0, 0)).save(tmp_path / "images" / f"p{k:03d}.jpg")
    for item in manifest.items:
        item.image_path = tmp_path / item.image
    paths = _two_checkpoints(cfg, rows)
    merged = merged_rows(paths)
    out.mkdir(parents=True, exist_ok=True)
    for n, row in enumerate(merged.values()):
        if row.output_path and n % 5:  # some outputs missing
            Image.new("RGB", (32, 32), (n % 256, 9, 9)).save(out / row.output_path)
    monkeypatch.chdir(tmp_path)
    publish.write_outputs(cfg, manifest, merged, force=True)  # every row held, as `pipeline report` did
    whole = _outputs(out)
    assert len([name for name in whole if name.startswith("report")]) == 7
    for name in [*whole, "thumbs/.direct"]:
        if not name.endswith(".jpg") or name.startswith("thumbs/"):
            (out / name).unlink(missing_ok=True)
    monkeypatch.setattr(rowview, "BATCH", 97)  # batches that end mid-way through a page
    monkeypatch.setattr(listing, "BIG", 50)  # output.dir's names held as their hashes
    with ReadView(paths) as view:
        publish.write_outputs(cfg, manifest, view, force=True)
    assert _outputs(out) == whole


def test_a_big_folders_names_are_found_by_their_hashes(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "BIG", 40)
    names = [f"sku-{k:05d}.jpg" for k in range(0, 300, 3)]
    for name in names:
        (tmp_path / name).touch()
    os.mkdir(tmp_path / "thumbs")
    found = listing.read(tmp_path)
    assert isinstance(found, listing.Hashed) and len(found) == len(names) + 1
    asked = [f"sku-{k:05d}.jpg" for k in range(300)] + ["thumbs", "", "sku-00000.jp"]
    assert [name for name in asked if name in found] == [*names, "thumbs"]
    monkeypatch.setattr(listing, "BIG", 1000)
    assert listing.read(tmp_path) == {*names, "thumbs"}
