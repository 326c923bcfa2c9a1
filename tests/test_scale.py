"""A catalog at scale, scaled down to 100k rows for correctness only (the timings are in benchmarks/scale.py):
a shard that keeps its rows while the manifest streams holds exactly what the whole manifest, selected,
held; the shards partition the catalog; the streamed CSV reader reads what csv over StringIO read."""
from __future__ import annotations

import csv
import io

import pytest

from helpers import draw_product, write_catalog
from pipeline.inputs.build import build
from pipeline.inputs.readers import _csv_rows
from pipeline.inputs.validate import validate
from pipeline.plan.shards import Shard

ROWS = 100_000
SHARDS = 4


def _first(rows: list[dict], start: int, shard: Shard, *, of: str | None = None) -> int:
    """The first row from ``start`` whose id ``shard`` owns (or, with ``of``, owns not although it owns ``of``)."""
    return next(i for i in range(start, len(rows)) if shard.owns(rows[i]["id"]) == (of is None))


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory):
    rows = [{"id": f"sku-{i:06d}", "image": f"images/p{i % 3}.{'png' if i % 3 % 2 else 'jpg'}",
             "title": f"product {i % 500}", "scene": "a white marble counter", "file": f"sku-{i:06d}"}
            for i in range(ROWS)]
    rows[10]["id"] = ""                                  # no id: shard 0 reports it
    rows[20]["id"] = rows[19]["id"]                      # a duplicate: the same shard as its first
    rows[30]["image"] = "images/missing.jpg"             # an image problem, found for its own shard only
    # Output names that differ only in case: ids on different shards, the later one reported
    zero = Shard(0, SHARDS)
    upper = next(i for i in range(40, ROWS) if zero.owns(rows[i]["id"].upper()) and not zero.owns(rows[i]["id"]))
    rows.append({**rows[upper], "id": rows[upper]["id"].upper(), "file": rows[upper]["file"].upper()})
    # The same output name, the later row's on shard 1 and the first one's on another shard
    taker = _first(rows, 1000, Shard(1, SHARDS))
    first = next(i for i in range(500, taker) if not Shard(1, SHARDS).owns(rows[i]["id"]))
    rows[taker]["file"] = rows[first]["file"]
    root = tmp_path_factory.mktemp("scale") / "catalog"
    (root / "images").mkdir(parents=True)
    for k in range(3):
        draw_product(root / f"images/p{k}.{'png' if k % 2 else 'jpg'}", "red", shape=k)
    config = write_catalog(root, base_url="http://127.0.0.1:9", rows=rows, config={"output": {"filename": "{file}.jpg"}})
    _, whole, _ = validate(config, env={})
    return config, whole, {"case": (upper + 2, len(rows) + 1), "name": (first + 2, taker + 2)}


def test_each_shard_streamed_holds_what_the_whole_manifest_selected_held(big_catalog):
    config, whole, _ = big_catalog
    assert len(whole.items) > ROWS - 10 and len(whole.invalid) == 5
    assert sum("also used by" in line for bad in whole.invalid for line in bad.problems) == 2
    seen: list[str] = []
    for k in range(SHARDS):
        shard = Shard(k, SHARDS)
        _, streamed, _ = validate(config, env={}, keep=shard.owner())
        selected = shard.select(whole)
        assert streamed.items == selected.items
        assert [i.extra for i in streamed.items] == [i.extra for i in selected.items]
        assert streamed.invalid == selected.invalid
        assert (streamed.columns, streamed.sha256) == (whole.columns, whole.sha256)
        seen += [i.id for i in streamed.items]
    assert sorted(seen) == sorted(i.id for i in whole.items)  # a partition: every item once, in one shard


@pytest.mark.parametrize("kind", ["case", "name"])
def test_a_shard_reports_an_output_name_an_earlier_row_of_another_shard_took(big_catalog, kind):
    config, _, rows = big_catalog
    first, later = rows[kind]
    reports = {}
    for k in range(SHARDS):
        _, streamed, _ = validate(config, env={}, keep=Shard(k, SHARDS).owner())
        reports[k] = [line for bad in streamed.invalid if bad.row == later for line in bad.problems]
    [(shard, [line])] = [(k, lines) for k, lines in reports.items() if lines]  # one shard says it, once
    assert shard == (0 if kind == "case" else 1)
    assert f"is also used by row {first} (id sku-{first - 2:06d})" in line


def test_a_shard_whose_names_no_other_shard_took_reads_the_manifest_once(big_catalog, monkeypatch):
    from pipeline.inputs import manifest
    config, whole, _ = big_catalog
    built = []
    monkeypatch.setattr(manifest, "build", lambda *args: built.append(args[6] if len(args) > 6 else None)
                        or build(*args))
    _, streamed, _ = validate(config, env={}, keep=Shard(2, SHARDS).owner())
    assert len(built) == 1 and built[0] is not None  # no second reading of every row
    assert streamed.items == Shard(2, SHARDS).select(whole).items
    _, streamed, _ = validate(config, env={}, keep=Shard(1, SHARDS).owner())
    assert len(built) == 3 and built[2] is None  # its name taken by an earlier row of another shard


@pytest.mark.parametrize("text", [
    "id,image\r\na,b\rc,d\ne,f", 'id,image\n"x\r\ny",b\n\n,\r\n', "id\n\n\nb\r\r", 'id,p\nq,"a\rb"\r',
    'id,p\na,"line\u2028two"\nb,"form\x0cfeed"\n',
    "id,p\na,un\u2028quoted\nb,form\x0cfeed\x1c\x85\n",
    "id,p\n" + "".join(f"r{i},{'x' * (i % 50)}\n" for i in range(50_000)),
])
def test_the_streamed_reader_reads_what_csv_over_stringio_read(text):
    reference = [r for r in csv.reader(io.StringIO(text, newline=""))]
    header, *rows = list(_csv_rows(text, "catalog.csv"))
    cells = [row[1] for row in rows]
    assert cells == [(r + [""] * (len(header) - len(r)))[:len(header)] for r in reference[1:] if any(r)]
    numbers = [n for n, r in enumerate(reference, start=1) if any(r)][1:]
    assert [row[0] for row in rows] == numbers


def test_status_counted_by_sqlite_says_what_the_rows_said(tmp_path, monkeypatch):
    from pipeline.outputs import status
    from pipeline.store.checkpoint import Checkpoint, Row

    config = write_catalog(tmp_path / "catalog", 2, base_url="http://127.0.0.1:9")
    cfg = __import__("pipeline.inputs.config", fromlist=["load_config"]).load_config(config)
    ckpt = Checkpoint.open(cfg.state_dir / "checkpoint.sqlite")
    ckpt.insert([Row("c-failed", "f", "failed"),
                 Row("b-done", "f", "done", attempts=1, credits=1, order_id="o1"),
                 Row("a-failed", "f", "failed", attempts=2, credits=0, error="refused: 4002"),
                 Row("d-new", "f", "pending"),
                 Row("e-pending", "f", "pending", attempts=1, error="upload refused, retrying"),
                 Row("f-in-flight", "f", "submitted", attempts=1, order_id="o2", credits=0, error=""),
                 Row("g-uploaded", "f", "uploaded", order_id="o3", error="order lost"),
                 Row("h-held", "f", "review", attempts=1, credits=1, order_id="o4", fidelity=0.41),
                 Row("i-rejected", "f", "pending", attempts=1, review="rejected", review_reason="logo",
                     reviewed_at=20.0, rebuys=1),
                 Row("j-approved", "f", "done", attempts=1, credits=1, order_id="o5", fidelity=0.6,
                     review="approved", reviewed_at=10.0, output_path="j.jpg", output_sha256="ab", output_size=3)])
    ckpt.close()
    tallied = status.read_status(str(config))
    monkeypatch.setattr(status, "read_tally", lambda path: None)
    assert tallied == status.read_status(str(config))
    assert tallied["counts"]["new"] == 1 and tallied["counts"]["pending"] == 2 and tallied["credits"]["spent"] == 3
    assert tallied["counts"]["review"] == 1 and tallied["disclosure"]["outputs"] == tallied["disclosure"]["lacking"] == 1
    assert [f["id"] for f in tallied["failures"]] == ["a-failed", "c-failed"]
    assert [n["id"] for n in tallied["notes"]] == ["e-pending", "g-uploaded"]
    assert tallied["review"] == [{"id": "h-held", "fidelity": 0.41, "last_decision": None}]
    assert [(d["id"], d["decision"], d["state"]) for d in tallied["decisions"]] == [
        ("i-rejected", "rejected", "pending"), ("j-approved", "approved", "done")]
