"""Break the tool on purpose: fault soak, full or read-only disks, corrupt checkpoints, leaked keys."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from PIL import Image

from conftest import child_env, pipeline_cmd, write_catalog
from pipeline.cli import main


def test_fault_soak_loses_nothing_and_charges_once_per_item(sandbox, catalog_dir):
    sandbox.set_options(fast=True, processing_s=0.05, processing_jitter=0.5, rate_429=0.08,
                        rate_5xx=0.08, rate_reset=0.04, rate_garbage=0.03, rate_bad_status=0.03,
                        rate_failed=0.05, slow_order_rate=0.02, slow_order_s=0.3, seed=99)
    n = 300
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"limits": {"concurrency": 32},
                                   "poll": {"interval_s": 0.05, "max_attempts": 20},
                                   "retries": {"transient": 12, "failed_orders": 6}})
    # statusCode 5001 is the server's own fault (5xxx), retried like an HTTP 5xx: one run does it all.
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == n
    assert len(list((catalog_dir / "out").glob("*.jpg"))) == n


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs, for disk-full and read-only tests (needs root and mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _noisy_catalog(root: Path, n: int, base_url: str, out_dir: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        noise = Image.frombytes("RGB", (500, 500), os.urandom(500 * 500 * 3))
        noise.save(images / f"n{i}.jpg", quality=95)
        rows.append({"id": f"n{i}", "image": f"images/n{i}.jpg", "title": "noise", "scene": "marble"})
    return write_catalog(root, base_url=base_url, rows=rows, config={"output": {"dir": str(out_dir)}})


def test_disk_full_is_a_clear_error_and_the_checkpoint_survives(sandbox, catalog_dir, small_disk):
    config = _noisy_catalog(catalog_dir, 40, sandbox.base_url, small_disk)
    done = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr or "disk is full" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    conn = sqlite3.connect(small_disk / ".pipeline" / "checkpoint.sqlite")
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    recorded = conn.execute("SELECT count(*) FROM items WHERE order_id IS NOT NULL").fetchone()[0]
    conn.close()
    assert recorded > 0
    # Room again (move the state somewhere bigger): the rerun pays only for what is not done.
    roomy = catalog_dir / "roomy"
    shutil.copytree(small_disk, roomy)
    config.write_text(config.read_text().replace(str(small_disk), str(roomy)))
    again = subprocess.run(pipeline_cmd("run", str(config), "--quiet"), env=child_env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    # Orders answered after the disk filled cannot be written down; at most one per item in flight.
    assert sandbox.ledger_snapshot()["credits"] <= 40 + 8


def test_read_only_output_dir_is_a_clear_error(sandbox, catalog_dir, small_disk):
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url,
                           config={"output": {"dir": str(small_disk)}})
    assert main(["run", str(config), "--quiet"]) == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = subprocess.run(pipeline_cmd("run", str(config), "--quiet", "--force"), env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "read-only" in done.stderr.lower() or "readonly" in done.stderr.lower(), done.stderr
    assert "Traceback" not in done.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    conn = sqlite3.connect(small_disk / ".pipeline" / "checkpoint.sqlite")
    assert conn.execute("SELECT count(*) FROM items WHERE state = 'done'").fetchone()[0] == 3
    conn.close()


@pytest.mark.parametrize("damage", ["garbage", "foreign"])
def test_damaged_checkpoint_is_refused_with_a_message(sandbox, catalog_dir, damage):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    path = catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(os.urandom(4096) * 4)
    else:
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE orders (id TEXT)")
        conn.commit()
        conn.close()
    sandbox.reset_ledger()
    done = subprocess.run(pipeline_cmd("run", str(config)), env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0  # no silent restart from zero


def test_the_key_never_appears_in_any_output(sandbox, catalog_dir):
    secret = f"lx-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    sandbox.set_options(api_key=secret, rate_5xx=0.2, rate_failed=0.2)
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    env = child_env(LIGHTX_API_KEY=secret)
    runs = [subprocess.run(pipeline_cmd(*args), env=env, capture_output=True, text=True, timeout=60)
            for args in (("run", str(config)), ("run", str(config), "--json"), ("status", str(config)))]
    bad = subprocess.run(pipeline_cmd("run", str(config), "--force"),
                         env=child_env(LIGHTX_API_KEY=secret[:-4] + "0000"),
                         capture_output=True, text=True, timeout=60)
    for done in runs + [bad]:
        assert secret not in done.stdout + done.stderr
        assert secret[:-4] not in done.stdout + done.stderr
    for path in catalog_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_ids_and_templates_cannot_write_outside_output_dir(sandbox, catalog_dir, capsys):
    rows = [{"id": "..", "image": "images/p0.jpg", "title": "x", "scene": "y"},
            {"id": "ok", "image": "images/p0.jpg", "title": "x", "scene": "y"}]
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url)
    write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows,
                  config={"output": {"dir": "out", "filename": "{id}/{title}.jpg"}})
    assert main(["run", str(config), "--quiet"]) == 2
    assert "(id ..)" in capsys.readouterr().err
    assert main(["run", str(config), "--quiet", "--skip-invalid"]) == 1
    written = [p for p in catalog_dir.rglob("*.jpg") if "images" not in p.parts]
    assert written and all((catalog_dir / "out") in p.parents for p in written)
