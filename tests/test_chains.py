"""Variants run against the sandbox: each step's input is the item's own previous output, one credit
per step, nothing bought twice (rerun, a changed field, kill -9 mid-chain)."""
from __future__ import annotations

import csv
import hashlib
import sqlite3
import subprocess

import yaml

from helpers import child_env, draw_product, order_ids as checkpoint_orders, pipeline_cmd, received_sha256, wait_for, write_catalog
from helpers import result_rows as results
from pipeline.cli import main

LIFESTYLE = {"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title} on {scene}"},
                                            {"tool": "upscale", "quality": 2}]}
MARKETPLACE = {"name": "marketplace", "steps": [{"tool": "remove-background", "background": "#FFFFFF"}]}
TWO_VARIANTS = {"variants": [LIFESTYLE, MARKETPLACE], "output": {"filename": "{variant}/{id}.jpg"}}


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def orders(sandbox, tool=None) -> dict[str, dict]:
    found = sandbox.ledger_snapshot()["orders"]
    return {oid: o for oid, o in found.items() if tool is None or o["tool"] == tool}


def edit(config, change) -> None:
    doc = yaml.safe_load(config.read_text())
    change(doc)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def sources(catalog_dir) -> dict[str, str]:
    with open(catalog_dir / "catalog.csv", newline="") as fh:
        return {row["id"]: sha(catalog_dir / row["image"]) for row in csv.DictReader(fh)}


def test_every_unit_is_done_each_step_on_that_items_own_output(sandbox, catalog_dir):
    n = 4
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == n * 3
    table = results(config)
    assert [(r["id"], r["variant"]) for r in table] == [(f"sku-{i:03d}", v) for i in range(n)
                                                        for v in ("lifestyle", "marketplace")]
    assert all(r["status"] == "done" for r in table)
    assert list(table[0])[:3] == ["id", "variant", "status"]
    report = (catalog_dir / "out" / "report.html").read_text()
    # One row per item: its source once, then its variants side by side (tests/test_report_variants.py)
    assert report.count('<article class="card row done"') == n and report.count('alt="input"') == n
    first, second = report.index('data-id="sku-000/lifestyle"'), report.index('data-id="sku-000/marketplace"')
    assert first < second < report.index('data-id="sku-001"')
    assert 'href="lifestyle/sku-000.jpg"' in report and 'href="marketplace/sku-000.jpg"' in report
    by_output = {o["output_sha256"]: (oid, o) for oid, o in orders(sandbox).items()}
    source = sources(catalog_dir)
    out = catalog_dir / "out"
    for row in table:
        final_id, final = by_output[received_sha256(out / row["output_path"])]
        assert row["order_id"] == final_id and row["output_path"] == f"{row['variant']}/{row['id']}.jpg"
        if row["variant"] == "lifestyle":
            assert (final["tool"], final["fields"]) == ("upscale", {"quality": 2})
            _, first = by_output[final["sha256"]]  # its input: exactly the bytes a generator order made
            assert first["tool"] == "background-generator" and first["sha256"] == source[row["id"]]
            assert first["prompt"] == f"{row['title']} on {row['scene']}"
            assert int(row["credits"]) == 2
        else:
            assert final["tool"] == "remove-background" and final["sha256"] == source[row["id"]]
            assert final["fields"] == {"background": "#FFFFFF"} and int(row["credits"]) == 1


def test_a_rerun_costs_nothing_and_only_quality_rebuys_one_upscale_per_item(sandbox, catalog_dir, capsys):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    generated = {o["output_sha256"] for o in orders(sandbox, "background-generator").values()}
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 0
    edit(config, lambda doc: doc["variants"][0]["steps"][1].update(quality=4))
    capsys.readouterr()
    assert main(["run", str(config), "--dry-run"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"credits needed {n}")
    assert main(["run", str(config), "--quiet"]) == 0
    again = orders(sandbox)
    assert sandbox.ledger_snapshot()["credits"] == n
    assert [o["tool"] for o in again.values()] == ["upscale"] * n
    assert {o["sha256"] for o in again.values()} == generated  # from the kept intermediate outputs
    assert all(r["status"] == "done" for r in results(config))


def test_a_changed_prompt_rebuys_the_chain_from_that_step(sandbox, catalog_dir):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config=TWO_VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    sandbox.reset_ledger()
    edit(config, lambda doc: doc["variants"][0]["steps"][0].update(prompt="{title} on a beach"))
    assert main(["run", str(config), "--quiet"]) == 0
    assert sorted(o["tool"] for o in orders(sandbox).values()) == ["background-generator"] * n + ["upscale"] * n
    assert sandbox.ledger_snapshot()["credits"] == n * 2


def test_budget_and_status_count_one_credit_per_step(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url,
                           config={**TWO_VARIANTS, "budget": {"max_credits": 4}})
    assert main(["run", str(config), "--quiet"]) == 1
    assert sandbox.ledger_snapshot()["credits"] <= 4
    capsys.readouterr()
    assert main(["status", str(config)]) == 0
    status = capsys.readouterr().out
    step_lines = [line for line in status.splitlines() if line.startswith("  sku-")]
    assert step_lines and all("/" in line.split()[0] for line in step_lines)
    conn = sqlite3.connect(catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite")
    paid = dict(conn.execute("SELECT id, order_id FROM items WHERE credits = 1"))
    conn.close()
    assert len(paid) == sandbox.ledger_snapshot()["credits"]
    assert all(f"  {sid} [done] {oid}, 1 credit" in status for sid, oid in paid.items())


def test_a_style_image_is_uploaded_once_for_every_item(sandbox, catalog_dir):
    n = 3
    catalog_dir.mkdir(parents=True)
    draw_product(catalog_dir / "style.png", "teal", size=64)
    shoot = {"name": "shoot", "steps": [{"tool": "product-photoshoot", "style_image": "style.png"}]}
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config={"variants": [shoot]})
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == n and ledger["uploads_completed"] == n + 1
    style = sha(catalog_dir / "style.png")
    assert all(o["images"] == {"styleImageUrl": style} for o in orders(sandbox).values())


def test_kill_9_mid_chain_then_a_rerun_finishes_without_buying_a_step_twice(sandbox, catalog_dir):
    """One order slot, so a kill loses at most the one submit whose answer was on its way (the API has
    no idempotency key); with more slots a kill can lose one per slot, which is why the bound needs it."""
    sandbox.set_options(processing_s=0.2, processing_jitter=0.5)
    n = 5
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={**TWO_VARIANTS, "limits": {"concurrency": 1},
                                   "poll": {"interval_s": 0.05, "max_attempts": 30}})
    kills, recorded = 0, {}
    for wanted in (2, 5, 9, 12):  # kill the moment the sandbox has taken that many orders
        child = subprocess.Popen(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(orders(sandbox)) >= wanted or child.poll() is not None, f"{wanted} orders")
            if child.poll() is None:
                kills += 1
        finally:
            child.kill()
            child.wait()
        recorded.update(checkpoint_orders(config))
    final = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                           capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    assert kills >= 1 and any(step.endswith("/2") for step in recorded)
    now = checkpoint_orders(config)
    assert all(now[step] == order for step, order in recorded.items()), "a recorded order was bought again"
    assert sandbox.ledger_snapshot()["credits"] <= n * 3 + kills
    table = results(config)
    assert len(table) == n * 2 and all(r["status"] == "done" for r in table)
    by_output = {o["output_sha256"]: o for o in orders(sandbox).values()}
    for row in table:  # whatever was killed, each picture is still that item's own chain
        final_order = by_output[received_sha256(catalog_dir / "out" / row["output_path"])]
        first = by_output[final_order["sha256"]] if row["variant"] == "lifestyle" else final_order
        assert first["sha256"] == sources(catalog_dir)[row["id"]]


def test_variants_in_shards_then_unsharded_buy_nothing_twice(sandbox, catalog_dir):
    n = 4
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config=TWO_VARIANTS)
    for shard in ("0/2", "1/2"):
        assert main(["run", str(config), "--quiet", "--shard", shard]) == 0
    assert sandbox.ledger_snapshot()["credits"] == n * 3
    assert main(["run", str(config), "--quiet"]) == 0  # adopts every shard's step rows
    assert sandbox.ledger_snapshot()["credits"] == n * 3
    table = results(config)
    assert len(table) == n * 2 and all(r["status"] == "done" for r in table)
