"""The run engine end to end against the sandbox: happy path, faults, resume, credits."""
from __future__ import annotations

import sqlite3
import traceback

import pytest
from PIL import Image

from helpers import results, write_catalog
from pipeline.cli import main


def checkpoint_rows(config):
    conn = sqlite3.connect(config.parent / "out" / ".pipeline" / "checkpoint.sqlite")
    conn.row_factory = sqlite3.Row
    rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM items")}
    conn.close()
    return rows


def test_happy_path_outputs_every_item_once(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "done 6 · review 0 · failed 0 · pending 0" in out
    table = results(config)
    assert len(table) == 6 and {r["status"] for r in table.values()} == {"done"}
    for row in table.values():
        path = catalog_dir / "out" / row["output_path"]
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (96, 96)
    import pandas as pd
    parquet = pd.read_parquet(catalog_dir / "out" / "results.parquet")
    assert len(parquet) == 6 and set(parquet["status"]) == {"done"}
    assert {"id", "status", "order_id", "output_path", "error", "title", "scene"} <= set(parquet.columns)
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 6
    assert ledger["overpolls"] == 0
    assert ledger["keys_seen_on_non_api"] == 0


def test_rerun_of_unchanged_catalog_sends_nothing(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 4, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert sum(ledger["requests"].values()) == 0
    assert "0 credits spent" in capsys.readouterr().out


def test_identical_images_are_uploaded_once(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 5, base_url=sandbox.base_url, distinct=False)
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["upload_url"] == 1 and ledger["requests"]["put"] == 1
    assert ledger["credits"] == 5


FAULTS = {
    "429": {"rate_429": 0.3},
    "5xx": {"rate_5xx": 0.3},
    "reset": {"rate_reset": 0.2},
    "garbage": {"rate_garbage": 0.2},
    "bad_status": {"rate_bad_status": 0.2},
    "5000": {"rate_5000": 0.2},
    "failed_orders": {"rate_failed": 0.3},
    "all": {"rate_429": 0.08, "rate_5xx": 0.08, "rate_reset": 0.04, "rate_garbage": 0.03,
            "rate_bad_status": 0.03, "rate_failed": 0.05},
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_faults_still_end_with_one_credit_per_item(sandbox, catalog_dir, faults):
    sandbox.set_options(**faults)
    config = write_catalog(catalog_dir, 12, base_url=sandbox.base_url,
                           config={"retries": {"transient": 10, "failed_orders": 5}})
    # A statusCode in the 5xxx range is the server's own fault, retried like an HTTP 5xx: one run.
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 12
    assert set(results(config)) == {f"sku-{i:03d}" for i in range(12)}
    assert all(r["status"] == "done" for r in results(config).values())


def test_failed_order_is_resubmitted_and_costs_nothing(sandbox, catalog_dir):
    sandbox.set_options(rate_failed=1.0)
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config={"retries": {"failed_orders": 2}})
    assert main(["run", str(config), "--quiet"]) == 1
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 0 and ledger["requests"]["submit"] == 6  # 1 + 2 resubmits each
    table = results(config)
    assert {r["status"] for r in table.values()} == {"failed"}
    assert "order failed 3 times" in table["sku-000"]["error"]
    sandbox.set_options(rate_failed=0.0)
    assert main(["run", str(config), "--quiet"]) == 0  # a rerun retries failed items
    assert sandbox.ledger_snapshot()["credits"] == 2


def test_order_still_init_after_its_allowance_is_checked_once_by_each_later_run(sandbox, catalog_dir):
    from pipeline.store.checkpoint import Checkpoint
    sandbox.set_options(slow_order_rate=0.5, slow_order_s=3.0)
    # No fidelity score: starting its worker processes could make this first run outlast the slow 3 s orders.
    config = write_catalog(catalog_dir, 8, base_url=sandbox.base_url,
                           config={"poll": {"interval_s": 0.05, "max_attempts": 2}, "qa": {"min_fidelity": 0}})
    # Earlier runs saw 0.1 s orders, so this run's two checks fall well before the slow ones' 3 s.
    state = config.parent / "out" / ".pipeline"
    state.mkdir(parents=True)
    ckpt = Checkpoint.open(state / "checkpoint.sqlite")
    for _ in range(200):
        ckpt.save_order_time("lightx", 0.05, 0.15)
    ckpt.close()
    assert main(["run", str(config), "--quiet"]) == 1
    table = results(config)
    parked = {k for k, r in table.items() if r["status"] == "pending"}
    assert parked and len(parked) < 8
    assert all("still processing" in table[k]["error"] for k in parked)
    before = {oid: o["polls"] for oid, o in sandbox.ledger_snapshot()["orders"].items()}
    assert max(before.values()) <= 2 and sandbox.ledger_snapshot()["overpolls"] == 0
    # At once: each parked order gets one check, no sooner than the 99th percentile of the order
    # times seen so far after its last check.
    assert main(["run", str(config), "--quiet"]) == 1
    middle = {oid: o["polls"] for oid, o in sandbox.ledger_snapshot()["orders"].items()}
    checked = {oid: middle[oid] - n for oid, n in before.items() if middle[oid] != n}
    assert len(checked) == len(parked) and set(checked.values()) == {1}
    sandbox.set_options(clock_skew_s=10.0)  # the sandbox's clock moves on: the slow orders are done
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["submit"] == 8  # never resubmitted
    assert ledger["credits"] == 8
    assert max(o["polls"] for o in ledger["orders"].values()) <= 4  # 2 allowed, then 1 a run


def test_wrong_key_stops_the_run_after_one_request_without_leaking_it(sandbox, catalog_dir, monkeypatch, capsys):
    secret = "wrong-key-5f2b9c0e7d1a4b3c8e6f0a9b2c4d6e8f"
    monkeypatch.setenv("LIGHTX_API_KEY", secret)
    config = write_catalog(catalog_dir, 20, base_url=sandbox.base_url)
    assert main(["run", str(config)]) == 1
    err = capsys.readouterr().err
    assert "API key rejected" in err and secret not in err
    assert sandbox.ledger_snapshot()["requests"]["upload_url"] == 1
    assert {r["status"] for r in results(config).values()} == {"pending"}  # the table is still written
    for path in (catalog_dir / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_no_credits_stops_new_submits_and_keeps_the_rest_pending(sandbox, catalog_dir, capsys):
    sandbox.set_options(credit_limit=3)
    config = write_catalog(catalog_dir, 8, base_url=sandbox.base_url, config={"limits": {"concurrency": 2}})
    assert main(["run", str(config), "--quiet"]) == 1
    counts = {s: sum(1 for r in results(config).values() if r["status"] == s) for s in ("done", "pending")}
    assert counts["done"] == 3 and counts["pending"] == 5
    assert "no credits left" in capsys.readouterr().err


def test_expired_upload_is_redone_not_submitted(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet", "--only", "sku-000"]) == 0
    ckpt = catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite"
    conn = sqlite3.connect(ckpt)
    conn.execute("UPDATE uploads SET uploaded_at = uploaded_at - 25 * 3600")
    conn.commit()
    conn.close()
    sandbox.age_uploads(25 * 3600)
    write_catalog(catalog_dir, 1, base_url=sandbox.base_url,
                  rows=[{"id": "sku-000", "image": "images/p0.jpg", "title": "changed", "scene": "sand"}])
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["put"] == 1 and ledger["credits"] == 1
    assert ledger["requests"]["submit"] == 1  # the expired imageUrl was never sent: no refused submit


def test_unreachable_api_stops_the_run_and_fails_no_item(sandbox, catalog_dir, capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connections are refused
    config = write_catalog(catalog_dir, 10, base_url=f"http://127.0.0.1:{port}/external/api",
                           config={"retries": {"transient": 3}})
    assert main(["run", str(config), "--quiet"]) == 1
    assert "cannot reach the API at http://127.0.0.1" in capsys.readouterr().err
    assert {r["status"] for r in results(config).values()} == {"pending"}


def test_temp_files_a_killed_run_left_are_removed_by_the_next(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    out = catalog_dir / "out"
    (out / "thumbs").mkdir(parents=True)
    stale = [out / ".part-999999-0", out / "thumbs" / ".part-999999-1"]
    for path in stale:
        path.write_bytes(b"\xff\xd8\xff half a picture")
    keep = out / "notes.part-1.txt"  # not ours: the prefix must match exactly
    keep.write_text("mine")
    assert main(["run", str(config), "--quiet"]) == 0
    assert not any(p.exists() for p in stale) and keep.exists()
    assert not list(out.rglob(".part-*"))


def test_orders_at_the_api_stay_within_concurrency_while_uploads_run_ahead(sandbox, catalog_dir):
    """Read afterwards from the sandbox's ledger and the checkpoint, not watched with sleeps."""
    sandbox.set_options(processing_s=1.0)
    config = write_catalog(catalog_dir, 10, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 2, "transfers": 3},
                                   "poll": {"interval_s": 0.2, "max_attempts": 20}})
    assert main(["run", str(config), "--quiet"]) == 0
    orders = sorted(sandbox.ledger_snapshot()["orders"].values(), key=lambda o: o["created"])
    assert len(orders) == 10
    events = sorted([(o["created"], 1) for o in orders] + [(o["done_at"], -1) for o in orders])
    at_once = peak = 0
    for _, change in events:
        at_once += change
        peak = max(peak, at_once)
    assert peak == 2, "more orders than limits.concurrency at the API"
    # The sandbox's clock is this machine's: by the time the third order went in (about 1 s in),
    # the two ordered items and limits.transfers (3) more had been uploaded, and no more than that.
    uploaded = sorted(row["uploaded_at"] for row in checkpoint_rows(config).values())
    third = orders[2]["created"]
    assert sum(at < third for at in uploaded) == 5


def test_progress_counts_items_waiting_for_an_order_slot():
    import contextlib

    from pipeline.run.progress import Progress, StageCounts
    counts = StageCounts()
    with contextlib.ExitStack() as inside:
        for stage, n in dict(upload=2, ready=3, submit=1, poll=4, download=1).items():
            for _ in range(n):
                inside.enter_context(counts.inside(stage))
        line = Progress(total=20, counts=counts, enabled=False, quiet=True).line()
    assert counts["poll"] == 0  # each stage counted its items out again
    assert "uploading 2 · ready 3 · submitting 1 · polling 4 · downloading 1" in line


def test_a_bug_after_its_order_keeps_the_item_for_the_next_run_which_buys_nothing_again(sandbox, catalog_dir,
                                                                                         monkeypatch, caplog):
    """A bug at the item boundary once the order is paid (here in the download's check) stops that item
    alone and logs its traceback. Its row keeps the order: the next run downloads it for no new credit
    (a failed row would be ordered afresh, and paid for twice)."""
    from pipeline.run.stages import download

    real = download._check_jpeg
    calls = []

    def flaky(data, *preview):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        return real(data, *preview)

    monkeypatch.setattr(download, "_check_jpeg", flaky)
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    with caplog.at_level("ERROR", logger="pipeline.run.drive"):
        assert main(["run", str(config), "--quiet"]) == 1
    table = results(config)
    kept = [r for r in table.values() if r["status"] != "done"]
    assert len(kept) == 1 and kept[0]["status"] != "failed"
    assert kept[0]["error"].startswith("internal error: KeyError") and "kept for the next run" in kept[0]["error"]
    assert sum(r["status"] == "done" for r in table.values()) == 2
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "flaky" in "".join(traceback.format_exception(*logged[0].exc_info))
    run_log = (config.parent / "out" / ".pipeline" / "run.log").read_text()
    assert "ERROR pipeline.run.drive internal error on item" in run_log
    assert "Traceback (most recent call last)" in run_log and "in flaky" in run_log
    assert main(["run", str(config), "--quiet"]) == 0
    assert all(r["status"] == "done" for r in results(config).values())
    assert sandbox.ledger_snapshot()["credits"] == 3  # one per item: the kept one was not bought again


def test_a_bug_before_any_order_fails_the_item(sandbox, catalog_dir, monkeypatch):
    """Before its order nothing is paid: a bug fails the item, and the next run tries it afresh."""
    from pipeline.run.stages import upload

    real = upload._prepare
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        return real(*args)

    monkeypatch.setattr(upload, "_prepare", flaky)
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 1
    failed = [r for r in results(config).values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "internal error: KeyError: 'a bug'"
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 3


def test_the_run_log_never_holds_the_key(sandbox, catalog_dir, monkeypatch, capsys):
    """A bug whose message and traceback carry the key: the row and run.log get it blanked."""
    from pipeline.run.stages import download
    from pipeline.sandbox import SANDBOX_KEY

    def leaky(data, *preview):
        secret = SANDBOX_KEY  # noqa: F841 - a local in the traceback's frame
        raise RuntimeError(f"bug with key {SANDBOX_KEY} in it")

    monkeypatch.setattr(download, "_check_jpeg", leaky)
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--verbose"]) == 1
    run_log = (config.parent / "out" / ".pipeline" / "run.log").read_text()
    assert run_log.count("Traceback") == 2 and "[redacted]" in run_log
    assert SANDBOX_KEY not in run_log
    assert [r["error"].split(";")[0] for r in results(config).values()] == [
        "internal error: RuntimeError: bug with key [redacted] in it"] * 2
    err = capsys.readouterr().err
    assert "DEBUG" in err and ": HTTP 200" in err  # --verbose: one line per exchange
    assert SANDBOX_KEY not in err


def test_without_verbose_there_are_no_debug_lines(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    assert main(["run", str(config)]) == 0
    assert "DEBUG" not in capsys.readouterr().err
