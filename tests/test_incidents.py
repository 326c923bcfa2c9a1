"""LightX's own server faults: statusCode 5000 answers (in an HTTP 200) on a share of calls, and an
incident during which every API call is answered so. The run slows down; no item fails."""
from __future__ import annotations

import pytest

from helpers import results, write_catalog
from pipeline.cli import main


def test_a_fifth_of_answers_5000_on_upload_url_submit_and_status_still_end_in_one_run(sandbox, catalog_dir):
    sandbox.set_options(rate_5000=0.2, seed=11)
    config = write_catalog(catalog_dir, 24, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["faults"]["5000"] > 0
    assert ledger["credits"] == 24
    assert {r["status"] for r in results(config).values()} == {"done"}


@pytest.mark.parametrize("kind", ["5000", "503", "reset"])
def test_an_incident_answering_5000_to_everything_slows_the_run_and_fails_nothing(sandbox, catalog_dir, kind):
    # Every API call is answered 5000 (or a gateway's 503, or a dropped connection) for 2 s, from the
    # 20th on: uploads, submits and orders in flight.
    sandbox.set_options(outage_s=2.0, outage_after=20, outage_kind=kind)
    config = write_catalog(catalog_dir, 12, base_url=sandbox.base_url,
                           config={"retries": {"backoff_base_s": 0.05, "backoff_max_s": 0.5}})
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["faults"]["outage"] > 12  # more refusals than items: every item met it at least once
    assert ledger["credits"] == 12 and ledger["max_polls_per_order"] <= 5
    assert {r["status"] for r in results(config).values()} == {"done"}


def test_an_api_that_never_answers_the_first_call_ends_the_run_after_a_few_tries_not_the_budget(
        catalog_dir, capsys, monkeypatch):
    import socket
    monkeypatch.setenv("LIGHTX_API_KEY", "some-key")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connections are refused
    config = write_catalog(catalog_dir, 3, base_url=f"http://127.0.0.1:{port}/external/api")
    assert main(["run", str(config), "--quiet"]) == 1  # retries.budget_s is 300 s: not spent on this
    err = capsys.readouterr().err
    assert "cannot reach the API" in err and "gave up after 8 attempts" in err, err
