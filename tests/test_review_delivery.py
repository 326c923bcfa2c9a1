"""Outputs held for review (#22) are delivered nowhere else: no rendition (#23) and no store import
file line (#24) is made from them, until `pipeline review --approve` makes them done; then the next run
makes those for 0 credits."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

import pipeline
from helpers import child_env, pipeline_cmd, write_catalog
from store_exports import read_csv, write_shopify

SMALL = {"name": "small", "format": "jpeg", "quality": 70, "max_side": 48}
PUBLIC = "https://cdn.example.com/ai"
HOLD_ALL = {"min_fidelity": 1.0}  # with the sandbox's altered, rescaled JPEGs below: every output is held
ALTER_ALL = {"rate_altered": 1.0, "output_scale": 1.25, "output_shift": 0.03, "output_quality": 85}


def run(config: Path) -> dict:
    done = subprocess.run(pipeline_cmd("run", str(config), "--json"), env=child_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def table(out: Path) -> dict[str, dict]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def renditions(out: Path) -> set[str]:
    return {p.name for p in (out / "small").glob("*")} if (out / "small").is_dir() else set()


def test_held_outputs_get_no_rendition_until_approved(sandbox, catalog_dir):
    sandbox.set_options(**ALTER_ALL)
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url,
                           config={"output": {"renditions": [SMALL]}, "qa": HOLD_ALL})
    out = catalog_dir / "out"
    first = run(config)
    assert (first["exit_code"], first["counts"]["review"], first["counts"]["done"]) == (0, 3, 0), first
    assert all((out / row["output_path"]).is_file() for row in table(out).values())  # kept on disk
    assert renditions(out) == set()
    assert {row["small_path"] for row in table(out).values()} == {""}

    decided = pipeline.review(config, approve=["sku-001"])
    assert decided["approved"] == ["sku-001"] and {h["id"] for h in decided["held"]} == {"sku-000", "sku-002"}
    again = run(config)
    assert (again["credits"], again["counts"]["done"], again["counts"]["review"]) == (0, 1, 2), again
    rows = table(out)
    assert renditions(out) == {Path(rows["sku-001"]["output_path"]).with_suffix(".jpg").name}
    assert rows["sku-001"]["small_path"] and rows["sku-000"]["small_path"] == rows["sku-002"]["small_path"] == ""


def test_held_outputs_stay_out_of_the_store_import_file_until_approved(tmp_path, sandbox, pictures):
    sandbox.set_options(**ALTER_ALL)
    root = tmp_path / "shop"
    root.mkdir()
    write_shopify(root / "products_export.csv", f"{pictures.base}/img", "current")
    doc = {"manifest": "products_export.csv", "prompt": "{title} on a marble counter", "qa": HOLD_ALL,
           "output": {"dir": "out", "public_url": PUBLIC}, "poll": {"interval_s": 0.05},
           "api": {"base_url": sandbox.base_url}, "retries": {"backoff_base_s": 0.01, "backoff_max_s": 0.2}}
    config = root / "catalog.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))

    def generated() -> set[str]:
        path = root / "out" / "shopify-import.csv"
        rows = read_csv(path) if path.exists() else []
        return {row["URL handle"] for row in rows if row["Product image URL"].startswith(PUBLIC)}

    first = run(config)
    assert (first["exit_code"], first["counts"]["review"], first["credits"]) == (0, 3, 3), first
    assert generated() == set()
    held = sorted(h["id"] for h in pipeline.review(config)["held"])
    assert len(held) == 3
    pipeline.review(config, approve=held[:1])
    again = run(config)
    assert (again["credits"], again["counts"]["done"], again["counts"]["review"]) == (0, 1, 2), again
    assert len(generated()) == 1
