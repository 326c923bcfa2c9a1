"""results.csv and results.parquet: the same table, typed, from the checkpoint's rows."""
from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.outputs import results
from pipeline.store.checkpoint import Row
from pipeline.inputs.config import load_config
from pipeline.inputs.manifest import InvalidItem, Item, Manifest

AWKWARD = 'a "quoted", comma\nand newline — ünïcode'


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "catalog.csv").write_text("id,image,title\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("manifest: catalog.csv\nprompt: '{title}'\n", encoding="utf-8")
    return config


def sample(tmp_path: Path, awkward: str = AWKWARD):
    cfg = load_config(write_config(tmp_path))
    items = [Item(id="007", image="a.jpg", prompt=awkward, row=2, output_name="007.jpg",
                  extra={"title": awkward, "note": ""}),
             Item(id="NA", image="b.jpg", prompt="plain", row=3, output_name="NA.jpg",
                  extra={"title": "plain", "note": "null"})]
    manifest = Manifest(items=items, invalid=[InvalidItem(id="bad", row=4, problems=["no image"])],
                        columns=["id", "image", "title", "note"])
    rows = {"007": Row(id="007", fingerprint="f", state="done", order_id="o1", output_path="007.jpg",
                       output_sha256="ab" * 32, attempts=1, credits=1, submitted_at=1_700_000_000.0,
                       finished_at=1_700_000_012.25)}
    return cfg, manifest, rows


@pytest.mark.parametrize("awkward", [AWKWARD, 'no line break, but "quotes", commas', "cr\ronly"])
def test_parquet_holds_the_same_table_as_the_csv_with_types(tmp_path, awkward):
    cfg, manifest, rows = sample(tmp_path, awkward)
    csv_path = results.write(cfg, manifest, rows)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    parquet = pq.read_table(csv_path.with_suffix(".parquet"))
    assert parquet.column_names == list(table[0])
    types = {f.name: str(f.type) for f in parquet.schema}
    assert types["attempts"] == types["credits"] == "int64" and types["elapsed_s"] == "double"
    floats = ("elapsed_s", "fidelity", "fidelity_ssim", "fidelity_delta_e", "fidelity_iou")
    assert {types[name] for name in floats} == {"double"}
    assert {types[name] for name in types if name not in ("attempts", "credits", *floats)} == {"string"}
    back = parquet.to_pylist()
    assert [r["id"] for r in back] == ["007", "NA", "bad"]  # ids stay strings, "NA" is not a null
    done, pending, bad = back
    assert done["prompt"] == done["title"] == awkward
    assert (done["status"], done["attempts"], done["credits"], done["elapsed_s"]) == ("done", 1, 1, 12.25)
    assert done["note"] is None and pending["note"] == "null"
    assert pending["status"] == "pending" and pending["order_id"] is None and pending["attempts"] == 0
    assert (bad["status"], bad["error"], bad["prompt"]) == ("failed", "no image", None)
    for csv_row, pq_row in zip(table, back):  # every cell agrees, empty cells being nulls
        assert {k: (v if v != "" else None) for k, v in csv_row.items()} == \
            {k: (None if v is None else str(v) if k not in floats else f"{v}") for k, v in pq_row.items()}


def test_writing_results_does_not_import_pandas(tmp_path):
    """pandas costs half a second of CPU to import; a run has no use for it."""
    write_config(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_results import sample; "
            "from pipeline.outputs import results; from pathlib import Path; "
            "results.write(*sample(Path(sys.argv[2]))); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unchanged_results_are_touched_not_rewritten_and_any_change_rewrites(tmp_path, monkeypatch):
    cfg, manifest, rows = sample(tmp_path)
    csv_path = results.write(cfg, manifest, rows)
    parquet_path = csv_path.with_suffix(".parquet")
    first = csv_path.read_bytes()
    old = (csv_path.stat().st_mtime_ns, parquet_path.stat().st_mtime_ns)
    import os
    os.utime(csv_path, ns=(old[0] - 10**9, old[0] - 10**9))  # as if written a second earlier
    os.utime(parquet_path, ns=(old[1] - 10**9, old[1] - 10**9))
    # The stamp recorded the mtimes above, so it no longer matches: rewritten, stamp renewed.
    results.write(cfg, manifest, rows)
    written = []
    monkeypatch.setattr(results, "_write_csv", lambda *args: written.append(args[-1]))
    before = csv_path.stat().st_mtime_ns
    results.write(cfg, manifest, rows)  # nothing changed: no write, a fresh mtime
    assert written == [] and csv_path.read_bytes() == first
    assert csv_path.stat().st_mtime_ns >= before
    monkeypatch.undo()

    rows["007"].updated_at = 1_700_000_100.0  # a checkpoint row changed
    rows["007"].state, rows["007"].error = "failed", "changed"
    results.write(cfg, manifest, rows)
    assert b"changed" in csv_path.read_bytes()

    results.write(cfg, manifest, rows)
    csv_path.write_bytes(b"edited by hand")  # a file that is not as left is rewritten
    results.write(cfg, manifest, rows)
    assert csv_path.read_bytes().startswith(b"id,status")

    # The manifest text changed (load_manifest records the hash of the text it read).
    manifest = dataclasses.replace(manifest, sha256="of an edited manifest")
    real = results._write_csv
    monkeypatch.setattr(results, "_write_csv", lambda *args: written.append(args[-1]) or real(*args))
    results.write(cfg, manifest, rows)
    assert len(written) == 1
    results.write(cfg, manifest, rows, force=True)  # `pipeline report` always rewrites
    assert len(written) == 2
