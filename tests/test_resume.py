"""Stops of every kind, in a child process: kill -9, Ctrl-C, a second run; then resume."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from helpers import child_env, order_ids, pipeline_cmd, wait_for, write_catalog


def assert_outputs_whole(config, *, after_a_kill=False):
    """Every output path holds a whole JPEG. A kill -9 mid-write may leave a `.part-*` temp file
    (never at an output path); the next run removes it."""
    out = config.parent / "out"
    for path in out.glob("*.jpg"):
        with Image.open(path) as im:
            im.load()
    if not after_a_kill:
        assert not list(out.rglob(".part-*")), "a run left a temp file behind"


def orders_in_flight(sandbox, config, placed_before: set[str]) -> set[str]:
    """Orders this run placed that the checkpoint has written down and the sandbox is still processing."""
    orders = sandbox.ledger_snapshot()["orders"]
    recorded = set(order_ids(config).values())
    return {oid for oid, o in orders.items() if oid not in placed_before and o["status"] == "init" and oid in recorded}


def test_kill_9_while_orders_are_in_flight_then_resume(sandbox, catalog_dir):
    sandbox.set_options(processing_s=1.0, processing_jitter=0.5)
    n = 24
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 6},
                                   "poll": {"interval_s": 0.1, "max_attempts": 30}})
    recorded: dict[str, str] = {}
    caught: set[str] = set()  # orders in flight, written down, at the moment of a kill
    kills = 3
    for _ in range(kills):
        placed = set(sandbox.ledger_snapshot()["orders"])
        child = subprocess.Popen(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            caught |= wait_for(lambda: orders_in_flight(sandbox, config, placed), "order in flight", child=child)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        assert_outputs_whole(config, after_a_kill=True)
        recorded.update(order_ids(config))
    assert caught and set(recorded.values()) >= caught
    final = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    ledger = sandbox.ledger_snapshot()
    # A kill may lose the answers of the submits on their way, at most one per order slot.
    assert ledger["credits"] <= n + kills * 6
    # An order written down is collected, never replaced by a new one; those caught in flight included.
    now = order_ids(config)
    assert all(now[item] == order for item, order in recorded.items()), "a recorded order was resubmitted"
    assert caught <= set(now.values())
    assert all(ledger["orders"][oid]["status"] == "active" for oid in caught)
    assert_outputs_whole(config)
    assert len(list((catalog_dir / "out").glob("*.jpg"))) == n


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """`pid` exists and has not ended (a zombie has: init may be slow to reap it, or never in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")
def test_a_run_killed_with_9_leaves_no_process_behind(sandbox, catalog_dir):
    """A run's fidelity worker waits for jobs on a pipe whose writing end it holds itself: after a
    kill -9 of the run (the OOM killer's way) it must end by itself, and multiprocessing's resource
    tracker with it, not wait forever."""
    sandbox.set_options(processing_s=0.3)
    config = write_catalog(catalog_dir, 24, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 4}, "poll": {"interval_s": 0.1}})
    child = subprocess.Popen(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The fidelity worker starts at the first output, beside multiprocessing's resource tracker.
        started = wait_for(lambda: kids if len(kids := _children(child.pid)) >= 2 else None,
                           "a fidelity worker", child=child)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    wait_for(lambda: not any(map(_running, started)), "end of the killed run's worker processes", timeout=15)


def test_ctrl_c_stops_saves_and_a_rerun_finishes(sandbox, catalog_dir):
    sandbox.set_options(processing_s=0.5)
    n = 16
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 4}, "poll": {"interval_s": 0.2}})
    child = subprocess.Popen(pipeline_cmd("run", str(config)), env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: sandbox.ledger_snapshot()["requests"].get("submit", 0) >= 3, "3 submits", child=child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=15)
    assert child.returncode == 130, err
    assert "interrupted" in err
    assert (catalog_dir / "out" / "results.csv").exists()
    final = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert final.returncode == 0, final.stderr
    assert sandbox.ledger_snapshot()["credits"] == n


def test_second_run_of_same_config_exits_75_naming_the_holder_at_once(sandbox, catalog_dir):
    # The first run holds the lock for an hour: every request is answered 5xx and its backoff is 3600 s.
    sandbox.set_options(rate_5xx=1.0)
    config = write_catalog(catalog_dir, 4, base_url=sandbox.base_url,
                           config={"retries": {"backoff_base_s": 3600, "backoff_max_s": 3600, "budget_s": 7200}})
    first = subprocess.Popen(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (catalog_dir / "out" / ".pipeline" / "run.lock.json").exists(), "lock file", child=first)
        wait_for(lambda: sandbox.ledger_snapshot()["faults"].get("5xx"), "answer 5xx", child=first)
        second = subprocess.run(pipeline_cmd("run", str(config)), env=child_env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 75
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None  # the second run did not wait for the first
    finally:
        first.kill()
        first.wait()
    # The lock dies with its holder: the next run is not blocked.
    sandbox.set_options(rate_5xx=0.0)
    again = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sandbox.ledger_snapshot()["credits"] == 4


def test_sandbox_flag_survives_a_kill_and_a_second_run(catalog_dir):
    """The newcomer's path: --sandbox, Ctrl-C or kill mid-run, then the same command again."""
    config = write_catalog(catalog_dir, 12, base_url="http://127.0.0.1:9/unused",
                           config={"poll": {"interval_s": 0.5}, "limits": {"concurrency": 4}})
    env = child_env()
    env.pop("LIGHTX_API_KEY")  # --sandbox needs no key
    child = subprocess.Popen(pipeline_cmd("run", str(config), "--sandbox", "--quiet"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(order_ids(config)) >= 3, "3 orders written down", child=child)
    child.kill()
    child.wait()
    again = subprocess.run(pipeline_cmd("run", str(config), "--sandbox", "--quiet"), env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(list((catalog_dir / "out").glob("*.jpg"))) == 12
    assert_outputs_whole(config)


def test_pipeline_sandbox_command_serves_the_protocol(tmp_path):
    import json
    import urllib.request
    server = subprocess.Popen(pipeline_cmd("sandbox", "--port", "0", "--fast"), env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("sandbox listening on http://127.0.0.1:"), line
        base = line.split()[3]
        request = urllib.request.Request(f"{base}/v2/uploadImageUrl", method="POST",
                                         data=json.dumps({"uploadType": "imageUrl", "size": 10,
                                                          "contentType": "image/jpeg"}).encode(),
                                         headers={"x-api-key": "sandbox-key",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            doc = json.load(answer)
        assert doc["statusCode"] == 2000 and doc["body"]["uploadImage"].startswith("http://127.0.0.1")
    finally:
        server.terminate()
        server.wait(timeout=10)
