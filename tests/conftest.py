"""Shared fixtures: one sandbox on 127.0.0.1 for the whole suite (per xdist worker), fresh sandboxes for
protocol tests, an S3 server, and a catalog folder. Plain helpers are in helpers.py."""
from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from helpers import TEST_SANDBOX, Cdn, Lx
from store_exports import PictureServer, draw_pictures
from pipeline.sandbox import SANDBOX_KEY, SandboxOptions, SandboxThread, start_sandbox


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


@pytest.fixture
def catalog_dir(tmp_path):
    return tmp_path / "catalog"


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



# -- a fresh sandbox per test, and a tiny client for it --------------------------------------------

@pytest.fixture
async def make_lx():
    """Factory: ``lx = await make_lx(clock=None, **SandboxOptions fields)``: a client on a fresh sandbox."""
    running, sessions = [], []

    async def make(clock=None, **options) -> Lx:
        sandbox = await start_sandbox(SandboxOptions(**{"processing_s": 0.05, **options}), clock=clock)
        session = aiohttp.ClientSession()
        running.append(sandbox)
        sessions.append(session)
        return Lx(session, sandbox)

    yield make
    for session in sessions:
        await session.close()
    for sandbox in running:
        await sandbox.close()


@pytest.fixture
async def lx(make_lx) -> Lx:
    return await make_lx()


# -- a store's CDN: the export's pictures served on 127.0.0.1 ---------------------------------------
@pytest.fixture
def pictures(tmp_path):
    """A PictureServer over the pictures draw_pictures made (store export tests)."""
    root = tmp_path / "cdn"
    draw_pictures(root)
    with PictureServer(root) as server:
        yield server


@pytest.fixture
def cdn():
    """A CDN on 127.0.0.1 that misbehaves as a test tells it (helpers.Cdn)."""
    with Cdn() as server:
        yield server
