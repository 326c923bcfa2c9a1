"""How often a catalog's images in a bucket are read: once each when new, not at all when unchanged.

GETs are counted by a forwarding proxy (tests/fault_proxy.py, no faults) between our client and moto's
S3 server, per object key, so what is counted is what the server was asked for.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from helpers import draw_product, write_catalog
from fault_proxy import FaultProxy
from pipeline.cli import main

ITEMS = 5


def noisy_jpeg(path: Path, side: int = 320) -> Path:
    """A JPEG over 64 KiB (noise compresses badly): bigger than one validation range."""
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, "JPEG", quality=90)
    return path


@pytest.fixture
def counted(s3, monkeypatch):
    """The S3 server behind a counting proxy: `counted.gets` is a Counter of GETs per object key."""
    from pipeline.store import remote
    gets: Counter = Counter()

    def count(method: str, path: str) -> bool:
        key, _, query = path.partition("?")
        if method == "GET" and key.startswith("/cat/images/") and "list-type" not in query:
            gets[key.removeprefix("/cat/")] += 1
        return False  # forward every call
    s3.client.create_bucket(Bucket="cat")
    with FaultProxy(s3.endpoint, refuse=count) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        remote.forget_filesystems()
        proxy.gets = gets
        yield proxy
    remote.forget_filesystems()


def catalog_of(s3, root: Path, base_url: str) -> tuple[Path, dict[str, bytes]]:
    """A local manifest whose images are in s3://cat/images/: small JPEGs and PNGs, one JPEG over 64 KiB,
    and one image two rows share. Returns the config and {key: bytes} of the images."""
    pictures = root / "pictures"
    pictures.mkdir(parents=True)
    names = []
    for k in range(ITEMS - 2):
        name = f"p{k}.{'png' if k % 2 else 'jpg'}"
        draw_product(pictures / name, ["red", "teal", "navy", "gold"][k % 4], shape=k)
        names.append(name)
    noisy_jpeg(pictures / "big.jpg")
    names += ["big.jpg", "p0.jpg"]  # the last row shares the first row's image
    images = {f"images/{n}": (pictures / n).read_bytes() for n in names}
    assert len(images["images/big.jpg"]) > 64 * 1024
    for key, data in images.items():
        s3.client.put_object(Bucket="cat", Key=key, Body=data)
    rows = [{"id": f"sku-{i:03d}", "image": f"s3://cat/images/{n}", "title": f"product {i}", "scene": "marble"}
            for i, n in enumerate(names)]
    config = write_catalog(root / "catalog", base_url=base_url, rows=rows, config={
        "output": {"dir": "s3://cat/out"}, "state": {"dir": "state"}})
    return config, images


def test_a_first_run_reads_each_new_image_once_and_a_rerun_reads_none(counted, s3, sandbox, tmp_path):
    config, images = catalog_of(s3, tmp_path, sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    assert counted.gets == Counter({key: 1 for key in images}), counted.gets
    sources = config.parent / "state" / "sources"
    for data in images.values():  # the copy the upload read is the object's bytes
        assert (sources / hashlib.sha256(data).hexdigest()).read_bytes() == data
    assert sandbox.ledger_snapshot()["credits"] == ITEMS
    counted.gets.clear()
    assert main(["run", str(config), "--quiet"]) == 0
    assert counted.gets == Counter() and sandbox.ledger_snapshot()["credits"] == ITEMS


def test_validate_then_run_reads_each_new_image_once_in_all(counted, s3, sandbox, tmp_path):
    config, images = catalog_of(s3, tmp_path, sandbox.base_url)
    assert main(["validate", str(config)]) == 0
    assert counted.gets == Counter({key: 1 for key in images}), counted.gets
    assert main(["run", str(config), "--quiet"]) == 0
    assert counted.gets == Counter({key: 1 for key in images}), counted.gets
    assert not (config.parent / "state" / "sources" / "validated.json").exists()  # moved to the stat cache
    assert main(["validate", str(config)]) == 0
    assert counted.gets == Counter({key: 1 for key in images}), counted.gets


def test_an_edited_image_is_read_once_more_and_a_bad_one_is_not_kept(counted, s3, sandbox, tmp_path):
    config, images = catalog_of(s3, tmp_path, sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    counted.gets.clear()
    edited = io.BytesIO()
    Image.new("RGB", (80, 80), "purple").save(edited, "JPEG")
    s3.client.put_object(Bucket="cat", Key="images/p2.jpg", Body=edited.getvalue())
    cut = images["images/big.jpg"][: len(images["images/big.jpg"]) // 2]
    s3.client.put_object(Bucket="cat", Key="images/big.jpg", Body=cut)  # no end marker now
    assert main(["run", str(config), "--quiet", "--skip-invalid"]) == 1  # the cut image's row failed
    assert counted.gets == Counter({"images/p2.jpg": 1, "images/big.jpg": 1}), counted.gets
    sources = config.parent / "state" / "sources"
    assert (sources / hashlib.sha256(edited.getvalue()).hexdigest()).exists()
    assert not (sources / hashlib.sha256(cut).hexdigest()).exists()
    assert sandbox.ledger_snapshot()["credits"] == ITEMS + 1  # the edited image only


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
def test_reads_through_random_faults_are_retried_and_read_once_each(client, s3, sandbox, tmp_path, monkeypatch):
    """Two in five image GETs refused (503, 500, resets) with every retry below ours off: each image
    is still validated and kept, by store/retry.py's backoff, with either client."""
    import s3fs
    from pipeline.store import remote
    monkeypatch.setenv("PIPELINE_BULK_READS", client)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    s3.client.create_bucket(Bucket="cat")
    config, images = catalog_of(s3, tmp_path, sandbox.base_url)
    config.write_text(config.read_text().replace("backoff_max_s: 0.2", "backoff_max_s: 0.2\n  budget_s: 60"))
    image_get = lambda method, path: method == "GET" and path.startswith("/cat/images/") and "list-type" not in path
    with FaultProxy(s3.endpoint, rate=0.4, seed=3) as proxy:
        proxy.refuse = None
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        remote.forget_filesystems()
        real = proxy._verdict
        proxy._verdict = lambda method, path: real(method, path) if image_get(method, path) else None
        assert main(["validate", str(config)]) == 0
    assert proxy.stats["503"] + proxy.stats["500"] + proxy.stats["reset"] > 0, proxy.stats
    sources = config.parent / "state" / "sources"
    for data in images.values():
        assert (sources / hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_the_lighter_client_serves_plain_s3_only_and_fsspec_the_rest(s3, monkeypatch):
    from pipeline.store.bulk import bulk_reader
    from pipeline.store.remote import Remote
    s3.client.create_bucket(Bucket="cat")
    assert bulk_reader(Remote.open("s3://cat").fs) is not None
    assert bulk_reader(Remote.open("s3://cat", {"requester_pays": True}).fs) is None
    assert bulk_reader(Remote.open("s3://cat").fs).endpoint == s3.endpoint  # AWS_ENDPOINT_URL
    elsewhere = {"endpoint_url": "http://127.0.0.1:9"}  # storage.options wins over the environment
    assert bulk_reader(Remote.open("s3://cat", elsewhere).fs).endpoint == "http://127.0.0.1:9"
    nested = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:8", "region_name": "eu-west-3"}}
    assert (bulk_reader(Remote.open("s3://cat", nested).fs).endpoint,
            bulk_reader(Remote.open("s3://cat", nested).fs).region) == ("http://127.0.0.1:8", "eu-west-3")
    monkeypatch.setitem(__import__("sys").modules, "obstore", None)  # not installed
    assert bulk_reader(Remote.open("s3://cat", {"anon": False}).fs) is None


def test_shards_one_after_another_read_each_new_image_once_in_all(counted, s3, sandbox, tmp_path):
    config, images = catalog_of(s3, tmp_path, sandbox.base_url)
    for k in range(2):
        assert main(["run", str(config), "--quiet", "--shard", f"{k}/2"]) == 0
    assert counted.gets == Counter({key: 1 for key in images}), counted.gets
    assert sandbox.ledger_snapshot()["credits"] == ITEMS
