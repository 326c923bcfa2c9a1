"""Shared fixtures: one sandbox on 127.0.0.1 for the whole suite, and small catalogs on disk."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from pipeline.sandbox import SANDBOX_KEY, SandboxOptions, SandboxThread

# Fast sandbox defaults for tests: orders finish in 0.1 s, polls every 0.05 s.
TEST_SANDBOX = SandboxOptions(processing_s=0.1, fast=False, seed=7, retry_after_s=0.05)
COLOURS = ["red", "blue", "green", "orange", "purple", "teal", "navy", "gold", "brown", "pink"]


@pytest.fixture(scope="session")
def sandbox_server():
    with SandboxThread(TEST_SANDBOX) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server, monkeypatch):
    """The suite's sandbox, with a clean ledger and default options for this test."""
    sandbox_server.set_options(**TEST_SANDBOX.to_dict())
    sandbox_server.reset_ledger()
    monkeypatch.setenv("LIGHTX_API_KEY", SANDBOX_KEY)
    monkeypatch.delenv("LIGHTX_BASE_URL", raising=False)
    return sandbox_server


def draw_product(path: Path, colour: str, size: int = 96, shape: int = 0) -> Path:
    """A simple product on a plain white background, saved as JPEG or PNG by suffix."""
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    box = (size // 4, size // 5, size * 3 // 4, size * 4 // 5)
    [draw.rectangle, draw.ellipse][shape % 2](box, fill=colour)
    im.save(path)
    return path


def write_catalog(root: Path, n: int = 6, *, base_url: str, config: dict | None = None,
                  distinct: bool = True, rows: list[dict] | None = None) -> Path:
    """Write images, catalog.csv and catalog.yaml under `root`; return the config path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    if rows is None:
        rows = []
        for i in range(n):
            k = i if distinct else 0
            name = f"images/p{k}.{'png' if k % 2 else 'jpg'}"
            if not (root / name).exists():
                draw_product(root / name, COLOURS[k % len(COLOURS)], shape=k)
            rows.append({"id": f"sku-{i:03d}", "image": name, "title": f"{COLOURS[k % 10]} product {i}",
                         "scene": "a white marble counter"})
    import csv
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    doc = {
        "manifest": "catalog.csv",
        "prompt": "{title} on {scene}",
        "output": {"dir": "out"},
        "limits": {"concurrency": 8},
        "poll": {"interval_s": 0.05},
        "api": {"base_url": base_url},
        "retries": {"backoff_base_s": 0.01, "backoff_max_s": 0.2},
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            doc.setdefault(section, {}).update(values)
        else:
            doc[section] = values
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def catalog_dir(tmp_path):
    return tmp_path / "catalog"


def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIGHTX_BASE_URL",)}
    env.update({"LIGHTX_API_KEY": SANDBOX_KEY, "PYTHONUNBUFFERED": "1"}, **extra)
    return env


# -- an S3 server on 127.0.0.1 -------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 protocol server (not a mock of our code), on a free port for the whole suite."""
    import logging
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A clean S3 server and the environment that points every client (ours, subprocesses, boto3) at
    it; `s3.client` is a boto3 client to set up and inspect buckets independently of our code."""
    import boto3
    import urllib.request
    from pipeline.store import remote
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/moto-api/reset", method="POST")).close()
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    remote.forget_filesystems()  # clients made for an earlier test keep their credentials and endpoint

    class S3:
        endpoint = s3_server
        client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}

        def put_tree(self, bucket: str, root: Path, prefix: str = "") -> None:
            """Upload every file under `root` to s3://bucket/prefix/..., creating the bucket."""
            self.client.create_bucket(Bucket=bucket)
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    self.client.put_object(Bucket=bucket, Key=f"{prefix}{path.relative_to(root).as_posix()}",
                                           Body=path.read_bytes())

        def keys(self, bucket: str, prefix: str = "") -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

        def get(self, bucket: str, key: str) -> dict:
            return self.client.get_object(Bucket=bucket, Key=key)
    yield S3()
    remote.forget_filesystems()


# -- exiftool: the metadata reader we did not write ------------------------------------------------

@pytest.fixture(scope="session")
def exiftool():
    """`exiftool(*paths)`: exiftool -G1 -a -n -j of each file, as dicts. Missing, it skips a test on a
    workstation and fails it in CI (.ci/run installs Debian's libimage-exiftool-perl)."""
    import json
    import shutil
    import subprocess
    found = shutil.which("exiftool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("exiftool is not installed; .ci/run installs libimage-exiftool-perl")
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl)")

    def read(*paths) -> list[dict]:
        done = subprocess.run([found, "-G1", "-a", "-n", "-j", *map(str, paths)], capture_output=True,
                              text=True, check=False)
        return json.loads(done.stdout)
    return read


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every JPEG segment from SOI to SOS; SOS's payload is the rest of the file."""
    import struct
    assert data[:2] == b"\xff\xd8"
    pos, found = 2, []
    while True:
        marker = data[pos + 1]
        if marker == 0xDA:
            found.append((marker, data[pos:]))
            return found
        (length,) = struct.unpack_from(">H", data, pos + 2)
        found.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length


def received_sha256(path: Path) -> str:
    """The sha256 of a delivered picture as the service sent it: without the disclosure XMP we add."""
    import hashlib
    from pipeline.media.xmp import disclose
    return hashlib.sha256(disclose(path.read_bytes(), None)).hexdigest()
