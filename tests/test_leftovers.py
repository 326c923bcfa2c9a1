"""What #14 left (#25): status counts items and variants with the step rows apart, steps/ is tidied
at the end of a run and its size shown, and an id with '/' is refused at validate."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from helpers import draw_product, write_catalog
from pipeline.cli import main
from pipeline.store.names import STEPS_DIR

LIFESTYLE = {"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title} on {scene}"},
                                            {"tool": "upscale", "quality": 2}]}
MARKETPLACE = {"name": "marketplace", "steps": [{"tool": "remove-background", "background": "#FFFFFF"}]}
TWO_VARIANTS = {"variants": [LIFESTYLE, MARKETPLACE], "output": {"filename": "{variant}/{id}.jpg"}}


def status_doc(capsys, config: Path) -> dict:
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_counts_items_and_variants_and_the_step_rows_apart(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    doc = status_doc(capsys, config)
    assert doc["counts"] == {"items": 3, "variants": 6, "new": 0, "pending": 0, "uploaded": 0, "submitted": 0,
                             "generated": 0, "done": 6, "failed": 0, "review": 0}
    assert doc["step_rows"] == {"rows": 9, "new": 0, "pending": 0, "uploaded": 0, "submitted": 0,
                                "generated": 0, "done": 9, "failed": 0, "review": 0}
    held = sorted((catalog_dir / "out" / ".pipeline" / STEPS_DIR).iterdir())
    assert len(held) == 3  # the lifestyle background before its upscale, one per item
    assert doc["steps_dir"] == {"files": 3, "bytes": sum(p.stat().st_size for p in held)}
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    assert "items: 3 · variants: 6 ·" in out and "step rows: 9 · done 9" in out
    assert "steps/: 3 intermediate outputs," in out


def test_a_variant_between_its_steps_is_pending(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    # As a run stopped after the first lifestyle step leaves it: step 1 done, no row for step 2 yet.
    conn = sqlite3.connect(catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite")
    with conn:
        conn.execute("DELETE FROM items WHERE id LIKE '%/lifestyle/2'")
    conn.close()
    doc = status_doc(capsys, config)
    assert doc["counts"] == {"items": 2, "variants": 4, "new": 0, "pending": 2, "uploaded": 0, "submitted": 0,
                             "generated": 0, "done": 2, "failed": 0, "review": 0}
    assert (doc["step_rows"]["rows"], doc["step_rows"]["done"]) == (4, 4)


def test_steps_no_row_references_are_removed_at_the_end_of_a_run(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    steps = catalog_dir / "out" / ".pipeline" / STEPS_DIR
    before = {p.name for p in steps.iterdir()}
    assert len(before) == 2
    stray = steps / ("0" * 64)
    stray.write_bytes(b"left by a variant that changed")
    other = steps / "notes.txt"  # not a name the pipeline writes: left alone
    other.write_text("mine")
    # The lifestyle variant changes its first step: its old backgrounds are no row's any more.
    doc = yaml.safe_load(config.read_text())
    doc["variants"][0]["steps"][0]["prompt"] = "{title} on a beach"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(config), "--quiet"]) == 0
    after = {p.name for p in steps.iterdir()}
    assert not after & before and stray.name not in after
    assert len(after - {"notes.txt"}) == 2 and other.read_text() == "mine"
    assert status_doc(capsys, config)["steps_dir"]["files"] == 3  # two backgrounds and notes.txt


def test_an_unchanged_rerun_keeps_every_step_it_needs(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    steps = catalog_dir / "out" / ".pipeline" / STEPS_DIR
    before = {p.name: p.read_bytes() for p in steps.iterdir()}
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 0
    assert {p.name: p.read_bytes() for p in steps.iterdir()} == before


def test_an_id_with_a_slash_is_refused_at_validate(catalog_dir, capsys):
    rows = [{"id": "sku/1", "image": "images/p0.jpg", "title": "a mug", "scene": "a table"}]
    (catalog_dir / "images").mkdir(parents=True)
    draw_product(catalog_dir / "images" / "p0.jpg", "red")
    config = write_catalog(catalog_dir, base_url="http://127.0.0.1:9/api", rows=rows, config=TWO_VARIANTS)
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "catalog.csv row 2 (id sku/1): id 'sku/1' must not contain '/': the checkpoint keeps a variant's " \
           "steps as sku/1/{variant}/{n}" in err
