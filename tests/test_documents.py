"""`--json` documents of validate, status and run --dry-run, and what they call items never submitted."""
from __future__ import annotations

import json

import pytest

from helpers import write_catalog
from pipeline.cli import DOCUMENT_KEYS, main

KEYS = ["command", "exit_code", "counts", "plan", "credits", "problems"]


def document(capsys, argv: list[str], code: int) -> dict:
    assert main(argv) == code
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one document, on one line
    return json.loads(out)


def test_every_document_starts_with_the_same_keys():
    assert list(DOCUMENT_KEYS) == KEYS


def test_validate_json(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 4, base_url=sandbox.base_url, distinct=False)
    doc = document(capsys, ["validate", str(config), "--json"], 0)
    assert doc == {"command": "validate", "exit_code": 0, "counts": {"items": 4, "valid": 4, "invalid": 0},
                   "plan": {"items": 4, "distinct_images": 1, "variants": {}}, "credits": {"full_run": 4}, "problems": []}


def test_validate_json_on_exit_2_still_counts_and_lists_every_problem(sandbox, catalog_dir, capsys, monkeypatch):
    rows = [{"id": "ok", "image": "images/p0.jpg", "title": "fine", "scene": "sand"},
            {"id": "gone", "image": "images/missing.jpg", "title": "x", "scene": "sand"},
            {"id": "bad id", "image": "images/p0.jpg", "title": "x", "scene": "sand"}]
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows)
    monkeypatch.chdir(catalog_dir)
    doc = document(capsys, ["validate", "catalog.yaml", "--json"], 2)
    assert list(doc) == [*KEYS, "error"]
    assert doc["counts"] == {"items": 3, "valid": 1, "invalid": 2}
    assert [line.split(":")[0] for line in doc["problems"]] == ["catalog.csv row 3 (id gone)",
                                                                "catalog.csv row 4 (id 'bad id')"]


@pytest.mark.parametrize("command", [["validate"], ["status"], ["run", "--dry-run"]])
def test_a_broken_config_still_gets_its_document(command, sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config={"limits": {"concurency": 2}})
    doc = document(capsys, [command[0], str(config), *command[1:], "--json"], 2)
    assert list(doc) == [*KEYS, "error"]
    assert (doc["counts"], doc["plan"], doc["credits"]) == (None, None, None)
    assert len(doc["problems"]) == 1 and "limits.concurency: unknown key" in doc["problems"][0]


def test_dry_run_json(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet", "--only", "sku-000"]) == 1
    capsys.readouterr()
    sandbox.reset_ledger()
    doc = document(capsys, ["run", str(config), "--dry-run", "--json"], 0)
    assert doc == {"command": "run", "exit_code": 0, "counts": {"items": 3, "valid": 3, "invalid": 0},
                   "plan": {"new": 2, "changed": 0, "unchanged": 1, "resumable": 0, "retry": 0, "repair": 0,
                            "forced": 0, "held": 0, "rebuy": 0},
                   "credits": {"needed": 2, "in_flight": 0}, "problems": [], "dry_run": True}
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


def test_status_json(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    doc = document(capsys, ["status", str(config), "--json"], 0)
    assert list(doc) == [*KEYS, "checkpoint", "exists", "failures", "notes", "runs", "total_runs", "review",
                         "decisions"]
    assert doc["exists"] is False and doc["credits"] == {"spent": 0, "last_run": None, "all_time": 0}
    assert main(["run", str(config), "--quiet"]) == 0
    capsys.readouterr()
    doc = document(capsys, ["status", str(config), "--json"], 0)
    assert doc["counts"] == {"items": 3, "new": 0, "pending": 0, "uploaded": 0, "submitted": 0, "generated": 0,
                             "done": 3, "failed": 0, "review": 0}
    assert (doc["plan"], doc["problems"], doc["failures"], doc["notes"]) == ({"in_flight": 0}, [], [], [])
    assert doc["credits"] == {"spent": 3, "last_run": 3, "all_time": 3} and doc["total_runs"] == 1


def test_after_a_rejected_key_nothing_is_called_pending_or_resumable(sandbox, catalog_dir, monkeypatch, capsys):
    monkeypatch.setenv("LIGHTX_API_KEY", "not-the-key")
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 1
    monkeypatch.setenv("LIGHTX_API_KEY", "sandbox-key")
    capsys.readouterr()
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    assert "new        6  (never submitted)" in out and "pending" not in out
    assert main(["run", str(config), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("plan: new 6 · changed 0 · unchanged 0 · resumable 0 ·")
    doc = document(capsys, ["status", str(config), "--json"], 0)
    assert (doc["counts"]["new"], doc["counts"]["pending"]) == (6, 0)


def test_skip_invalid_names_the_skipped_items_on_stderr(sandbox, catalog_dir, capsys, monkeypatch):
    rows = [{"id": "ok", "image": "images/p0.jpg", "title": "fine", "scene": "sand"}]
    rows += [{"id": f"gone-{i}", "image": f"images/missing-{i}.jpg", "title": "x", "scene": "sand"} for i in range(7)]
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows)
    monkeypatch.chdir(catalog_dir)
    assert main(["run", "catalog.yaml", "--quiet", "--skip-invalid", "--json"]) == 1
    captured = capsys.readouterr()
    lines = [line.split(" ", 1)[1] if line[:4].isdigit() else line for line in captured.err.splitlines()]
    assert lines[0] == "skipping 7 invalid items (recorded as failed):"
    assert lines[1:7] == [f"  catalog.csv row {i + 3} (id gone-{i}): image 'images/missing-{i}.jpg' not found "
                          f"(images/missing-{i}.jpg)" for i in range(5)] + [
        "  ... and 2 more (`pipeline validate` lists them all)"]
    summary = json.loads(captured.out)
    assert summary["counts"] == {"done": 1, "failed": 7, "pending": 0, "review": 0} and len(summary["problems"]) == 7
