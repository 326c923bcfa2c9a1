"""The API saying no, a wrong base URL, a stop while waiting: run-level behaviour against the sandbox."""
from __future__ import annotations

import signal
import subprocess

from helpers import DEADLINE_S, child_env, pipeline_cmd, results, wait_for, write_catalog
from pipeline.cli import main


def test_image_urls_refused_as_expired_by_a_clock_ahead_are_uploaded_again(sandbox, catalog_dir):
    sandbox.set_options(expired_status_code=4007, expired_message="IMAGE_URL_EXPIRED", refusals_http_200=True)
    config = write_catalog(catalog_dir, 30, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 16}})
    assert main(["run", str(config), "--quiet"]) == 0
    uploads = sandbox.ledger_snapshot()["requests"]["upload_url"]  # identical images share one
    # The sandbox's clock runs a day ahead now: by ours the uploads are fresh, by its they expired.
    sandbox.set_options(clock_skew_s=25 * 3600)
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet", "--force"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 30
    assert ledger["requests"]["upload_url"] == uploads  # each refused imageUrl uploaded once more
    assert ledger["requests"]["submit"] <= 30 * 3  # refused, asked once more, then accepted


def test_a_refused_prompt_fails_its_item_with_the_apis_code_and_message(sandbox, catalog_dir):
    sandbox.set_options(refuse_prompt="product 3 ", refusals_http_200=True)
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 1
    table = results(config)
    assert table["sku-003"]["status"] == "failed"
    assert "4013" in table["sku-003"]["error"] and "PROMPT_NOT_ALLOWED" in table["sku-003"]["error"]
    assert {r["status"] for k, r in table.items() if k != "sku-003"} == {"done"}
    assert sandbox.ledger_snapshot()["credits"] == 5


def test_a_base_url_without_the_api_root_stops_the_run_and_fails_no_item(sandbox, catalog_dir, capsys):
    wrong = sandbox.base_url.rsplit("/external/api", 1)[0]
    config = write_catalog(catalog_dir, 12, base_url=wrong)
    assert main(["run", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert wrong in err[0] and "HTTP 404" in err[0] and "api.base_url" in err[0] and "LIGHTX_BASE_URL" in err[0]
    assert {r["status"] for r in results(config).values()} == {"pending"}
    assert sandbox.ledger_snapshot()["requests"] == {}  # the sandbox's own routes never saw a call
    assert main(["run", str(config), "--dry-run"]) == 0
    assert "changed 0" in capsys.readouterr().out  # a wrong URL changes no item's identity


def test_sigterm_ends_a_run_whose_submits_back_off_without_waiting_for_them(sandbox, catalog_dir):
    # Backoffs of up to an hour: a run that waited for them would outlive the test's deadline.
    config = write_catalog(catalog_dir, 8, base_url=sandbox.base_url,
                           config={"budget": {"max_credits": 0},
                                   "retries": {"backoff_base_s": 3600, "backoff_max_s": 3600, "budget_s": 7200}})
    assert main(["run", str(config), "--quiet"]) == 1  # uploads only: the budget stops every submit
    sandbox.set_options(rate_5xx=1.0)
    config.write_text(config.read_text().replace("max_credits: 0", "max_credits: 100"))
    child = subprocess.Popen(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a submit was answered 5xx: the run is in backoff now (the other submits wait behind it)
        wait_for(lambda: sandbox.ledger_snapshot()["faults"].get("5xx"), "submit answered 5xx", child=child)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=DEADLINE_S)
        assert child.returncode == 130, err
    finally:
        child.kill()
        child.wait()
    assert sandbox.ledger_snapshot()["credits"] == 0
    assert {r["status"] for r in results(config).values()} == {"pending"}  # stopped, none failed
