"""Run history in the checkpoint: what a catalog has cost over every run, forced reruns included."""
from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

import pipeline
from helpers import write_catalog
from pipeline.cli import main
from pipeline.inputs.validate import validate
from pipeline.run import engine
from pipeline.run.engine import RunOptions
from pipeline.run.states import State
from pipeline.store import history
from pipeline.store.checkpoint import SCHEMA_VERSION, Checkpoint, Row


def status(capsys, config) -> dict:
    capsys.readouterr()
    assert main(["status", str(config), "--json", "--runs", "10"]) == 0
    return json.loads(capsys.readouterr().out)


def test_all_time_credits_equal_what_the_api_charged_over_five_runs_with_force(sandbox, catalog_dir, capsys,
                                                                               monkeypatch):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url, config={"retries": {"failed_orders": 5}})
    assert main(["run", str(config), "--quiet"]) == 0           # 3 orders
    assert main(["run", str(config), "--quiet"]) == 0           # nothing changed: nothing spent
    sandbox.set_options(rate_failed=0.4)                        # failed orders are free, and resubmitted
    assert main(["run", str(config), "--quiet", "--force"]) == 0
    sandbox.set_options(rate_failed=0.0)
    monkeypatch.setenv("LIGHTX_API_KEY", "not-the-key")
    assert main(["run", str(config), "--quiet", "--force"]) == 1  # rejected: nothing ordered
    monkeypatch.setenv("LIGHTX_API_KEY", "sandbox-key")
    assert main(["run", str(config), "--quiet"]) == 0           # the forced items, ordered again
    charged = sandbox.ledger_snapshot()["credits"]
    assert charged == 9
    doc = status(capsys, config)
    assert doc["credits"] == {"spent": 3, "last_run": 3, "all_time": charged}
    assert doc["total_runs"] == 5
    runs = doc["runs"]
    assert [(r["exit_code"], r["credits"]) for r in runs] == [(0, 3), (1, 0), (0, 3), (0, 0), (0, 3)]
    assert [r["options"]["force"] for r in runs] == [False, True, True, False, False]
    assert sum(r["submits"] for r in runs) == len(sandbox.ledger_snapshot()["orders"])  # failed ones too
    assert runs[2]["submits"] >= 3 and runs[1]["submits"] == 0
    assert all(r["version"] == pipeline.__version__ and r["ended_at"] >= r["started_at"] for r in runs)
    assert "not-the-key" not in json.dumps(doc)
    capsys.readouterr()
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"all-time credits: {charged} (over 5 runs)" in out
    assert re.search(r"^last run: #5 .* · exit 0 · 3 credits · 3 orders · ", out, re.M), out
    assert out.count("\n  #") == 5


def test_the_report_shows_this_run_the_runs_before_and_the_all_time_credits(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    assert main(["run", str(config), "--quiet", "--force"]) == 0
    page = (catalog_dir / "out" / "report.html").read_text()
    assert re.search(r'<span class="value">4</span><span class="label">Credits, all runs</span>', page)
    assert re.search(r'<span class="value">2</span><span class="label">Credits spent</span>', page)
    assert "Runs (all 2) · 4 credits in all" in page
    rows = re.findall(r"<tr><td>(#\d+[^<]*)</td>(?:<td>[^<]*</td>){2}<td>([^<]*)</td><td>(\d+)</td>", page)
    assert rows == [("#2 (this run)", "—", "2"), ("#1", "0", "2")]  # this run has no exit code yet
    assert main(["report", str(config)]) == 0
    rebuilt = (catalog_dir / "out" / "report.html").read_text()
    assert "(this run)" not in rebuilt and re.search(r"<tr><td>#2</td>(?:<td>[^<]*</td>){2}<td>0</td>", rebuilt)


def test_elapsed_leaves_out_the_confirmation_question(sandbox, catalog_dir, monkeypatch):
    """The question's wait is faked as 1000 s on the engine's clock; no real duration is asserted."""
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config={"budget": {"confirm_over": 0}})
    cfg, manifest, _ = validate(config)

    class Clock:
        waited = 0.0

        def monotonic(self) -> float:
            return time.monotonic() + self.waited

        def time(self) -> float:
            return time.time()

    clock = Clock()
    monkeypatch.setattr(engine, "time", clock)

    def confirm(credits: int) -> bool:
        clock.waited += 1000.0
        return True

    result = engine.run(cfg, manifest, RunOptions(confirm=confirm, quiet=True), key="sandbox-key")
    assert result.exit_code == 0 and clock.waited == 1000.0
    ckpt = Checkpoint.open(cfg.checkpoint_path)
    try:
        (run,) = ckpt.history().runs
    finally:
        ckpt.close()
    assert run.elapsed_s == pytest.approx(result.elapsed_s, abs=0.5) and run.elapsed_s < 1000
    assert run.ended_at - run.started_at < 1000  # wall clock: the fake wait never happened


def test_a_killed_run_keeps_what_it_was_charged(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    ckpt = Checkpoint.open(path)
    ckpt.insert([Row(id="a", fingerprint="f", state=State.UPLOADED, image_url="u")])
    row = ckpt.rows()["a"]
    run_id = ckpt.begin_run(started_at=time.time(), version="9", options={"force": True})
    ckpt.save(row, state=State.SUBMITTED, order_id="o1", attempts=1)
    ckpt.save(row, state=State.GENERATED, output_url="x", credits=1)
    ckpt.save(row, error="a note")  # neither a charge nor an order
    ckpt.close()  # no end_run: as if killed
    ckpt = Checkpoint.open(path)
    try:
        found = ckpt.history()
    finally:
        ckpt.close()
    assert found.all_time_credits == 1 and found.all_time_submits == 1
    (run,) = found.runs
    assert (run.id, run.ended_at, run.exit_code, run.credits, run.submits, run.options) == (
        run_id, None, None, 1, 1, {"force": True})


def test_an_older_checkpoint_gains_the_history_in_place_with_what_it_knew(tmp_path, capsys, sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    path = catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite"
    conn = sqlite3.connect(path)  # back to schema 2: no runs table
    conn.executescript("DROP TABLE runs; PRAGMA user_version=2;")
    conn.close()
    doc = status(capsys, config)  # read-only: shows the row the upgrade will add, writes nothing
    assert doc["credits"] == {"spent": 2, "last_run": 2, "all_time": 2}
    (before,) = doc["runs"]
    assert before["note"] == history.BEFORE_HISTORY and before["exit_code"] is None
    assert _schema(path) == 2
    assert main(["run", str(config), "--quiet", "--force"]) == 0  # the run upgrades it in place
    assert _schema(path) == SCHEMA_VERSION == 4
    doc = status(capsys, config)
    assert doc["credits"]["all_time"] == sandbox.ledger_snapshot()["credits"] == 4
    assert [r["note"] is None for r in doc["runs"]] == [True, False]


def _schema(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_status_and_the_report_add_up_every_shards_history(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    for shard in ("0/2", "1/2"):
        assert main(["run", str(config), "--quiet", "--shard", shard]) == 0
    assert main(["run", str(config), "--quiet", "--shard", "1/2", "--force"]) == 0
    doc = status(capsys, config)
    assert doc["credits"]["all_time"] == sandbox.ledger_snapshot()["credits"] > 6
    assert doc["total_runs"] == 3 and {r["options"]["shard"] for r in doc["runs"]} == {"0/2", "1/2"}
    assert main(["report", str(config)]) == 0
    page = (catalog_dir / "out" / "report.html").read_text()
    assert f"Runs (all 3) · {doc['credits']['all_time']} credits in all" in page
