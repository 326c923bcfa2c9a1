"""Buckets that misbehave: a fault-injecting proxy (tests/fault_proxy.py) in front of moto's S3 server,
random 503 SlowDown / 500 / resets on a share of calls, and storms of several seconds mid-run."""
from __future__ import annotations

import csv
import io

import pytest
from PIL import Image

from helpers import write_catalog
from fault_proxy import FaultProxy
from pipeline.cli import main

ITEMS = 12


@pytest.fixture
def bare_s3(s3, monkeypatch):
    """The S3 server with every retry below ours switched off (botocore's and s3fs's own), so what
    rides out the faults here is pipeline's retrying, not theirs."""
    import s3fs
    from pipeline.store import remote
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    remote.forget_filesystems()
    s3.client.create_bucket(Bucket="cat")
    return s3


def through(proxy: FaultProxy, monkeypatch) -> None:
    from pipeline.store import remote
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    remote.forget_filesystems()


def catalog(root, base_url: str, n: int = ITEMS, budget_s: float = 60):
    return write_catalog(root, n, base_url=base_url, config={
        "output": {"dir": "s3://cat/out"}, "state": {"dir": "state"},
        "retries": {"backoff_base_s": 0.05, "backoff_max_s": 0.5, "budget_s": budget_s}})


def assert_whole_jpegs(s3, n: int) -> None:
    """Every output in the bucket (read past the proxy) decodes whole, and the table lists them done."""
    pictures = [k for k in s3.keys("cat", "out/") if k.endswith(".jpg")]  # outputs and previews
    assert sorted(k for k in pictures if k.startswith("out/sku-")) == [f"out/sku-{i:03d}.jpg" for i in range(n)]
    for key in pictures:
        with Image.open(io.BytesIO(s3.get("cat", key)["Body"].read())) as im:
            assert im.format == "JPEG"
            im.load()  # raises on a cut or garbled object
    table = list(csv.DictReader(io.StringIO(s3.get("cat", "out/results.csv")["Body"].read().decode())))
    assert len(table) == n and {r["status"] for r in table} == {"done"}


def output_put(method: str, path: str) -> bool:
    return method == "PUT" and "/out/sku-" in path and path.split("?")[0].endswith(".jpg")


@pytest.mark.parametrize("storm_kind", ["503", "reset", "silent"])
def test_a_storm_and_random_faults_in_the_bucket_end_in_one_run_with_one_credit_each(
        sandbox, bare_s3, catalog_dir, monkeypatch, storm_kind):
    config = catalog(catalog_dir, sandbox.base_url)
    # 17% of calls fail at random; once the first output is written, 3 s in which every call gets 503
    # SlowDown, a reset, or no answer at all until the storm ends.
    with FaultProxy(bare_s3.endpoint, rate=0.17, seed=3, storm_s=3.0, storm_when=output_put,
                    storm_kind=storm_kind) as proxy:
        through(proxy, monkeypatch)
        assert main(["run", str(config), "--quiet"]) == 0
    assert proxy.stats["storm"] > 0 and proxy.stats["503"] + proxy.stats["500"] + proxy.stats["reset"] > 0
    assert storm_kind == "503" or proxy.stats[f"storm {storm_kind}"] == proxy.stats["storm"]
    assert sandbox.ledger_snapshot()["credits"] == ITEMS
    assert_whole_jpegs(bare_s3, ITEMS)
    assert not list((catalog_dir / "state" / "outbox").glob("*"))  # nothing left waiting


def test_outputs_the_bucket_refuses_wait_in_state_and_the_next_run_publishes_them_for_nothing(
        sandbox, bare_s3, catalog_dir, monkeypatch, capsys):
    config = catalog(catalog_dir, sandbox.base_url, n=4, budget_s=0.5)
    with FaultProxy(bare_s3.endpoint, refuse=output_put) as proxy:
        through(proxy, monkeypatch)
        assert main(["run", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "4 outputs paid for wait in" in err and "the next run uploads them for 0 credits" in err, err
    assert len(list((catalog_dir / "state" / "outbox").glob("*"))) == 4
    assert not [k for k in bare_s3.keys("cat", "out/") if k.startswith("out/sku-")]
    # The table went up all the same, with the items still to publish.
    table = list(csv.DictReader(io.StringIO(bare_s3.get("cat", "out/results.csv")["Body"].read().decode())))
    assert len(table) == 4 and {r["status"] for r in table} == {"pending"}
    before = sandbox.ledger_snapshot()
    with FaultProxy(bare_s3.endpoint) as proxy:  # the bucket takes writes again
        through(proxy, monkeypatch)
        assert main(["run", str(config), "--quiet"]) == 0
    after = sandbox.ledger_snapshot()
    assert after["credits"] == before["credits"] == 4
    assert after["requests"] == before["requests"]  # LightX not asked at all: no order, no download
    assert_whole_jpegs(bare_s3, 4)
    assert not list((catalog_dir / "state" / "outbox").glob("*"))
