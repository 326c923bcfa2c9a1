"""Remote pictures from a CDN that misbehaves (plan/pictures.py): refused, silent, stalled, slow, 5xx
for a while, 404/403; each a per-item reason, bounded retries, a host down given up once, Ctrl-C."""
from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import child_env, pipeline_cmd, refusing_port, wait_for
from pipeline.inputs.settings import ImageSettings, OutputSettings, RetrySettings, RunConfig
from pipeline.plan.fetch import FetchError
from pipeline.plan.pictures import FETCHES_AT_ONCE, fetch_pictures


def config(tmp_path: Path, *, attempts: int | None = 3, budget_s: float = 30.0, **images) -> RunConfig:
    limits = {"remote_timeout_s": 5.0, "remote_connect_timeout_s": 2.0, "remote_stall_timeout_s": 0.3, **images}
    return RunConfig(config_path=tmp_path / "c.yaml", manifest_path=tmp_path / "m.csv",
                     output=OutputSettings(dir=tmp_path / "out"), images=ImageSettings(**limits),
                     retries=RetrySettings(transient=attempts, backoff_base_s=0.01, backoff_max_s=0.05,
                                           budget_s=budget_s))


def fetch(cfg: RunConfig, urls) -> dict:
    return asyncio.run(fetch_pictures(cfg, set(urls)))


def reasons(got: dict) -> list[str]:
    assert all(isinstance(value, FetchError) for value in got.values()), got
    return [str(value) for value in got.values()]


def test_a_refusing_host_is_given_up_once_not_picture_by_picture(tmp_path):
    with refusing_port() as port:
        urls = [f"http://127.0.0.1:{port}/p{i}.jpg" for i in range(3 * FETCHES_AT_ONCE)]
        lines = reasons(fetch(config(tmp_path), urls))
    assert all(line.startswith(f"cannot connect to 127.0.0.1:{port} (connection refused)") for line in lines)
    tried = [line for line in lines if re.search(r": gave up after 3 tries in \d+ s$", line)]
    untried = [line for line in lines if re.search(r": host given up after 3 tries in \d+ s, not tried$", line)]
    assert 1 <= len(tried) <= FETCHES_AT_ONCE and len(tried) + len(untried) == len(urls)


def test_a_server_that_never_answers_is_cut_at_the_stall_timeout(tmp_path, cdn):
    cdn.default = ["silent"]
    urls = [cdn.url(f"/p{i}.jpg") for i in range(2 * FETCHES_AT_ONCE)]
    lines = reasons(fetch(config(tmp_path, attempts=2), urls))
    assert {line.split(":", 1)[0] for line in lines} == {"connected, but no answer within 0.3 s"}
    assert sum(cdn.requests.values()) <= 2 * FETCHES_AT_ONCE  # those in flight, twice; the rest not tried
    assert max(cdn.requests.values()) == 2


def test_a_stalled_or_slow_download_fails_that_picture_and_the_rest_go_on(tmp_path, cdn):
    # the two first (URLs are taken in order): the others come through while they are tried, so the
    # host is not given up. Two bad pictures left alone at the end of a catalog could give it up.
    cdn.answers = {"/a-stalls.jpg": ["stall"], "/a-trickles.jpg": ["trickle"]}
    good = [cdn.url(f"/p{i}.jpg") for i in range(20)]
    got = fetch(config(tmp_path, remote_timeout_s=1.0), good + [cdn.url("/a-stalls.jpg"), cdn.url("/a-trickles.jpg")])
    stalled, trickled = str(got[cdn.url("/a-stalls.jpg")]), str(got[cdn.url("/a-trickles.jpg")])
    assert stalled.startswith("the download stalled: nothing for 0.3 s after ") and "gave up after 3 tries" in stalled
    assert trickled.startswith("timed out after 1 s") and "gave up after 3 tries" in trickled
    source_dir = tmp_path / "out" / ".pipeline" / "sources"
    for url in good:
        sha = hashlib.sha256(cdn.picture(url.removeprefix(cdn.base))).hexdigest()
        assert got[url] == sha and (source_dir / sha).read_bytes() == cdn.picture(url.removeprefix(cdn.base))


def test_a_rerun_while_the_host_never_answers_reads_the_copies_and_waits_once(tmp_path, cdn):
    urls = [cdn.url(f"/p{i}.jpg") for i in range(3 * FETCHES_AT_ONCE)]
    first = fetch(config(tmp_path), urls)
    cdn.default, cdn.requests = ["silent"], type(cdn.requests)()
    assert fetch(config(tmp_path), urls) == first  # every picture, from the copies
    assert 1 <= sum(cdn.requests.values()) <= FETCHES_AT_ONCE  # the tries in flight when the first failed


def test_5xx_for_a_while_then_the_picture(tmp_path, cdn):
    cdn.default = [503, 502, 500, "ok"]
    urls = [cdn.url(f"/p{i}.jpg") for i in range(5)]
    got = fetch(config(tmp_path, attempts=None), urls)
    assert got == {url: hashlib.sha256(cdn.picture(url.removeprefix(cdn.base))).hexdigest() for url in urls}
    assert set(cdn.requests.values()) == {4}


def test_5xx_past_the_attempts_fails_that_picture_only(tmp_path, cdn):
    cdn.answers = {"/broken.jpg": [503]}
    got = fetch(config(tmp_path, attempts=4), [cdn.url("/broken.jpg"), cdn.url("/fine.jpg")])
    assert str(got[cdn.url("/broken.jpg")]).startswith("HTTP 503 Service Unavailable: gave up after 4 tries")
    assert isinstance(got[cdn.url("/fine.jpg")], str) and cdn.requests["/broken.jpg"] == 4


@pytest.mark.parametrize("status, words", [(404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden")])
def test_a_refusal_is_not_retried_and_the_host_is_not_given_up(tmp_path, cdn, status, words):
    cdn.answers = {f"/gone{i}.jpg": [status] for i in range(30)}
    urls = [cdn.url(f"/gone{i}.jpg") for i in range(30)] + [cdn.url(f"/p{i}.jpg") for i in range(3)]
    got = fetch(config(tmp_path), urls)
    assert {str(got[url]) for url in urls[:30]} == {words}
    assert all(isinstance(got[url], str) for url in urls[30:])
    assert set(cdn.requests.values()) == {1}


def test_a_name_that_does_not_resolve_gives_its_host_up_at_once(tmp_path, monkeypatch):
    # No DNS in tests: the lookup itself answers "no such name", as a resolver does for a removed CDN.
    import socket as socket_module

    def no_such_name(host, *args, **kwargs):
        raise socket_module.gaierror(socket_module.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket_module, "getaddrinfo", no_such_name)
    urls = [f"http://cdn.shop.example/p{i}.jpg" for i in range(40)]
    lines = reasons(fetch(config(tmp_path), urls))
    assert all(line.startswith("host cdn.shop.example not found (its name does not resolve)") for line in lines)
    assert sum(line.endswith("host given up, not tried") for line in lines) >= len(urls) - FETCHES_AT_ONCE


def test_a_name_lookup_that_hangs_holds_up_neither_the_fetch_nor_its_end(tmp_path, monkeypatch):
    # A network whose DNS is cut off: getaddrinfo does not return. The connect timeout ends each try,
    # and the lookups' threads are not waited for (asyncio.run waits for its default executor's).
    import socket as socket_module
    import threading
    released, lookups, returned = threading.Event(), [], []

    def hangs(host, *args, **kwargs):
        lookups.append(host)
        released.wait(60)  # a deadline for a broken build, not a timing: the test sets it when done
        returned.append(host)
        raise socket_module.gaierror(socket_module.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket_module, "getaddrinfo", hangs)
    try:
        urls = [f"http://cdn.shop.example/p{i}.jpg" for i in range(40)]
        lines = reasons(fetch(config(tmp_path, attempts=2, remote_connect_timeout_s=0.2), urls))
        still_hanging = not returned
    finally:
        released.set()
    assert still_hanging and set(lookups) == {"cdn.shop.example"} and len(lookups) <= 2  # one at a time, shared
    assert all(line.startswith("no connection within 0.2 s") for line in lines)


def test_ctrl_c_while_fetching_ends_the_run_at_once(tmp_path, cdn):
    cdn.default = ["silent"]
    root = tmp_path / "shop"
    root.mkdir()
    rows = "\n".join(f"p{i},{cdn.url(f'/p{i}.jpg')},thing {i}" for i in range(200))
    (root / "catalog.csv").write_text("id,image,title\n" + rows + "\n")
    (root / "catalog.yaml").write_text(yaml.safe_dump({"manifest": "catalog.csv", "prompt": "{title}",
                                                       "output": {"dir": "out"}}))
    child = subprocess.Popen(pipeline_cmd("run", str(root / "catalog.yaml"), "--dry-run"), env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sum(cdn.requests.values()) >= 1, "a picture asked for", child=child)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)  # fails the test, rather than hang it, if Ctrl-C is lost
    finally:
        child.kill()
    assert child.returncode == 130 and "aborted" in err
    assert "Traceback" not in err and out == ""


def test_a_cdn_down_buys_nothing_and_its_recovery_buys_exactly_the_missing(tmp_path, sandbox, cdn):
    from store_exports import read_csv, write_shopify
    root = tmp_path / "shop"
    root.mkdir()
    write_shopify(root / "products_export.csv", f"{cdn.base}/img")  # 3 products with a picture
    doc = {"manifest": "products_export.csv", "prompt": "{title} on a marble counter", "output": {"dir": "out"},
           "poll": {"interval_s": 0.05}, "api": {"base_url": sandbox.base_url},
           "retries": {"transient": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
           "qa": {"min_fidelity": 0}}  # the drawn pictures are not what the fidelity gate is about here
    (root / "catalog.yaml").write_text(yaml.safe_dump(doc))

    def run() -> tuple[dict, dict]:
        done = subprocess.run(pipeline_cmd("run", str(root / "catalog.yaml"), "--json"), env=child_env(),
                              capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr
        summary = yaml.safe_load(done.stdout.splitlines()[-1])
        return summary, {row["id"]: row for row in read_csv(root / "out" / "results.csv")}

    cdn.answers = {"/img/lamp.jpg": [503]}
    summary, rows = run()
    assert (summary["credits"], summary["counts"]["done"], summary["counts"]["failed"]) == (2, 2, 1)
    assert re.fullmatch(f"cannot fetch image {cdn.base}/img/lamp.jpg: HTTP 503 Service Unavailable: "
                        r"gave up after 2 tries in \d+ s", rows["desk-lamp"]["error"])
    cdn.default = [404]  # the whole CDN refuses now: no cached copy stands in for a refusal
    summary, rows = run()
    assert summary["credits"] == 0 and summary["exit_code"] == 1
    assert {k: r["status"] for k, r in rows.items()} == {"ceramic-mug": "done", "glass-vase": "done",
                                                          "desk-lamp": "failed"}
    cdn.default, cdn.answers = ["ok"], {}
    summary, _ = run()
    assert (summary["credits"], summary["counts"]["done"], summary["exit_code"]) == (1, 3, 0)
    assert run()[0]["credits"] == 0


@pytest.mark.parametrize("fault", ["5xx", "reset", "silent", "stall"])
def test_the_sandboxs_picture_host_in_trouble_for_a_while_costs_nothing_extra(tmp_path, sandbox, fault):
    sandbox.set_options(pictures_fault=fault, pictures_fault_first=3)
    root = tmp_path / "shop"
    root.mkdir()
    rows = "\n".join(f"p{i},{sandbox.root_url}/pictures/p{i}.jpg,thing {i}" for i in range(6))
    (root / "catalog.csv").write_text("id,image,title\n" + rows + "\n")
    (root / "catalog.yaml").write_text(yaml.safe_dump({
        "manifest": "catalog.csv", "prompt": "{title} on a marble counter", "output": {"dir": "out"},
        "poll": {"interval_s": 0.05}, "api": {"base_url": sandbox.base_url}, "qa": {"min_fidelity": 0},
        "images": {"remote_stall_timeout_s": 0.3},
        "retries": {"transient": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05}}))
    done = subprocess.run(pipeline_cmd("run", str(root / "catalog.yaml"), "--json"), env=child_env(),
                          capture_output=True, text=True, timeout=120)
    summary = yaml.safe_load(done.stdout.splitlines()[-1])
    assert (summary["exit_code"], summary["credits"], summary["counts"]["done"]) == (0, 6, 6), done.stderr
    ledger = sandbox.ledger_snapshot()
    assert ledger["faults"]["pictures"] == 3 and ledger["requests"]["pictures"] == 9
    assert "Traceback" not in done.stderr


def test_a_dry_run_lists_the_items_a_host_resetting_every_connection_leaves_out(tmp_path, sandbox):
    sandbox.set_options(pictures_fault="reset")
    root = tmp_path / "shop"
    root.mkdir()
    rows = "\n".join(f"p{i},{sandbox.root_url}/pictures/p{i}.jpg,thing {i}" for i in range(30))
    (root / "catalog.csv").write_text("id,image,title\n" + rows + "\n")
    (root / "catalog.yaml").write_text(yaml.safe_dump({
        "manifest": "catalog.csv", "prompt": "{title}", "output": {"dir": "out"},
        "api": {"base_url": sandbox.base_url},
        "retries": {"transient": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}}))
    command = pipeline_cmd("run", str(root / "catalog.yaml"), "--dry-run")
    text = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=120)
    doc = yaml.safe_load(subprocess.run([*command, "--json"], env=child_env(), capture_output=True, text=True,
                                        timeout=120).stdout)
    assert text.returncode == 0 and "not planned: 30 items whose source cannot be read now" in text.stderr
    assert "... and 25 more (`--dry-run --json` lists them all)" in text.stderr and "Traceback" not in text.stderr
    assert doc["plan"]["new"] == 0 and len(doc["problems"]) == 30
    assert all(re.fullmatch(rf"p\d+: cannot fetch image {sandbox.root_url}/pictures/p\d+\.jpg: the server reset "
                            r"the connection: (gave up|host given up) after 2 tries in \d+ s(, not tried)?", line)
               for line in doc["problems"]), doc["problems"]
    assert sandbox.ledger_snapshot()["credits"] == 0
