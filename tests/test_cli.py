"""The command line as a user meets it: exit codes, messages, quiet output, JSON summary."""
from __future__ import annotations

import json
import subprocess

import pytest

from helpers import child_env, pipeline_cmd, write_catalog
from pipeline.cli import main
from bad_inputs import BAD_CASES, write_case


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_input_exits_2_with_the_culprit_and_sends_nothing(case, command, tmp_path, monkeypatch,
                                                              capsys, sandbox):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTX_BASE_URL", sandbox.base_url)  # any request would show on the ledger
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    config = write_case(case, tmp_path)
    assert main([command, str(config)]) == 2
    err = capsys.readouterr().err
    assert any(all(part in line for part in case.expect) for line in err.splitlines()), err
    assert "Traceback" not in err
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


@pytest.mark.parametrize("argv", [["run"], ["frobnicate", "x.yaml"], ["run", "c.yaml", "--only"],
                                  ["run", "c.yaml", "--bogus"], []])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_key_is_a_usage_error_naming_the_variable(sandbox, catalog_dir, monkeypatch, capsys):
    monkeypatch.delenv("LIGHTX_API_KEY")
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config)]) == 2
    assert "LIGHTX_API_KEY" in capsys.readouterr().err


def test_validate_prints_the_plan(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url, distinct=False)
    assert main(["validate", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["6 items, 1 distinct image, 0 invalid",
                                "a full run would spend 6 credits (1 per generated image; failed orders are free)"]


def test_skip_invalid_runs_the_rest_and_records_the_reasons(sandbox, catalog_dir, capsys):
    rows = [{"id": "ok", "image": "images/p0.jpg", "title": "fine", "scene": "sand"},
            {"id": "gone", "image": "images/missing.jpg", "title": "x", "scene": "sand"}]
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows)
    assert main(["run", str(config), "--quiet"]) == 2
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0
    capsys.readouterr()
    assert main(["run", str(config), "--quiet", "--skip-invalid"]) == 1
    assert sandbox.ledger_snapshot()["credits"] == 1
    results = (catalog_dir / "out" / "results.csv").read_text()
    assert "gone,failed" in results and "missing.jpg" in results
    assert main(["status", str(config)]) == 0
    assert "gone" in capsys.readouterr().out


def test_without_a_tty_there_is_no_progress_animation(sandbox, catalog_dir):
    sandbox.set_options(processing_s=0.05)
    config = write_catalog(catalog_dir, 8, base_url=sandbox.base_url)
    done = subprocess.run(pipeline_cmd("run", str(config)), env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr
    assert done.stdout.startswith("done 8 · review 0 · failed 0 · pending 0")


def test_json_summary_is_one_line_on_stdout(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    done = subprocess.run(pipeline_cmd("run", str(config), "--json"), env=child_env(),
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["exit_code"] == done.returncode == 0
    assert summary["counts"] == {"done": 3, "failed": 0, "pending": 0, "review": 0}
    assert summary["credits"] == 3
    # The process's CPU, and the fidelity worker's that scored the 3 outputs (the gate is on by default).
    assert summary["cpu_s"]["process"] > 0 and summary["cpu_s"]["workers"] > 0


def test_status_reads_the_checkpoint_without_the_api(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url)
    assert main(["status", str(config)]) == 0
    assert "nothing has run" in capsys.readouterr().out
    assert main(["run", str(config), "--quiet"]) == 0
    sandbox.reset_ledger()
    capsys.readouterr()
    assert main(["status", str(config)]) == 0
    out = capsys.readouterr().out
    assert "done       3" in out
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


def test_json_line_even_when_the_run_stops_on_an_error(sandbox, catalog_dir, monkeypatch, capsys):
    monkeypatch.setenv("LIGHTX_API_KEY", "not-the-key")
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out.strip())
    assert summary["exit_code"] == 1 and "API key rejected" in summary["error"]


def test_version_prints_the_distribution_name_and_version():
    from importlib.metadata import version
    done = subprocess.run(pipeline_cmd("--version"), env=child_env(), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"lightx-pipeline {version('lightx-pipeline')}\n", "")


def test_the_distribution_is_ours_and_installs_the_pipeline_command():
    import tomllib
    from importlib.metadata import distribution
    from pathlib import Path
    import pipeline
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert project["name"] == pipeline.DISTRIBUTION == "lightx-pipeline"  # "pipeline" on PyPI is someone else's
    assert project["scripts"] == {"pipeline": "pipeline.cli:entry"}
    scripts = {ep.name: ep.value for ep in distribution("lightx-pipeline").entry_points
               if ep.group == "console_scripts"}
    assert scripts == {"pipeline": "pipeline.cli:entry"}


def test_main_leaves_no_log_handler_behind(sandbox, catalog_dir, capsys):
    # Called in a process that goes on (the suite, a program embedding the CLI), main()'s stderr handler
    # would outlive the stderr it holds: a later warning printed "Logging error: I/O operation on closed file".
    import logging

    before = list(logging.getLogger().handlers)
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    assert main(["validate", str(config)]) == 0
    assert logging.getLogger().handlers == before
