"""The issue's bucket storm, by hand: a catalog whose output.dir is in S3 behind a proxy that answers
503 SlowDown to everything for --storm-s seconds once the first output is written, on top of random
503 / 500 / connection resets on --rate of all S3 calls. One `pipeline run` must end 0, every item
done, credits = items, and every object in the bucket a whole JPEG.

    python benchmarks/s3_storm.py                        # 24 items, 40 s storm, 17% random faults
    python benchmarks/s3_storm.py --items 60 --storm-s 90 --bare   # botocore's and s3fs's retries off
    python benchmarks/s3_storm.py --storm-kind reset     # the storm resets every call instead (or 500,
                                                         # or silent: no answer until it ends)

moto's S3 server, the proxy (tests/fault_proxy.py) and the sandbox run in this process on 127.0.0.1;
`pipeline run` is a child process with the config's defaults (retries.budget_s 300, backoff 0.5-30 s).
Not part of the test suite: it takes about a minute. Needs the test extra (moto[server], s3fs).
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fault_proxy import STORM_KINDS, FaultProxy  # noqa: E402


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--storm-s", type=float, default=40.0)
    p.add_argument("--rate", type=float, default=0.17, help="share of S3 calls failed at random")
    p.add_argument("--processing-s", type=float, default=1.0, help="sandbox order time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--storm-kind", choices=STORM_KINDS, default="503",
                   help="what every S3 call gets during the storm: 503 SlowDown (default), 500, a reset, or no answer")
    p.add_argument("--bare", action="store_true", help="switch off botocore's and s3fs's own retries")
    args = p.parse_args(argv)

    import boto3
    import yaml
    from moto.server import ThreadedMotoServer
    from PIL import Image
    from pipeline.sandbox import SANDBOX_KEY, SandboxOptions, SandboxThread

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "storm", "AWS_SECRET_ACCESS_KEY": "storm", "AWS_DEFAULT_REGION": "us-east-1",
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
             "AWS_CONFIG_FILE": "/nonexistent"}
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="storm", aws_secret_access_key="storm",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="cat")

    def first_output(method: str, path: str) -> bool:
        return method == "PUT" and "/out/sku-" in path and path.split("?")[0].endswith(".jpg")

    with tempfile.TemporaryDirectory() as tmp, \
            SandboxThread(SandboxOptions(processing_s=args.processing_s, seed=args.seed)) as sandbox, \
            FaultProxy(endpoint, rate=args.rate, seed=args.seed, storm_s=args.storm_s,
                       storm_when=first_output, storm_kind=args.storm_kind) as proxy:
        root = Path(tmp)
        (root / "images").mkdir()
        rows = []
        for i in range(args.items):
            Image.new("RGB", (96, 96), (i * 37 % 256, i * 91 % 256, i * 53 % 256)).save(root / f"images/p{i}.jpg")
            rows.append({"id": f"sku-{i:05d}", "image": f"images/p{i}.jpg", "prompt": "on a marble counter"})
        with open(root / "catalog.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        config = root / "catalog.yaml"
        config.write_text(yaml.safe_dump({"manifest": "catalog.csv", "output": {"dir": "s3://cat/out"},
                                          "state": {"dir": "state"}, "api": {"base_url": sandbox.base_url},
                                          "limits": {"concurrency": 8}, "poll": {"interval_s": 0.5}}))
        env = {**os.environ, **creds, "AWS_ENDPOINT_URL": proxy.url, "LIGHTX_API_KEY": SANDBOX_KEY}
        if args.bare:
            env.update(AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
            code = "import s3fs, sys; s3fs.S3FileSystem.retries = 1; from pipeline.cli import main; sys.exit(main())"
            argv_run = [sys.executable, "-c", code, "run", str(config), "--quiet"]
        else:
            argv_run = [sys.executable, "-m", "pipeline", "run", str(config), "--quiet"]
        print(f"[storm] {args.items} items, {args.storm_s:.0f} s storm after the first output PUT, "
              f"{args.rate:.0%} random faults{' (botocore and s3fs retries off)' if args.bare else ''}",
              file=sys.stderr)
        started = time.monotonic()
        done = subprocess.run(argv_run, env=env, cwd=root, capture_output=True, text=True)
        wall = time.monotonic() - started
        storm = (proxy.storm_ended - proxy.storm_started) if proxy.storm_started else 0.0
        credits = sandbox.ledger_snapshot()["credits"]
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="cat", Prefix="out/")
                for o in page.get("Contents", [])]
        whole = broken = 0
        for key in keys:
            if key.endswith(".jpg"):
                try:
                    with Image.open(io.BytesIO(s3.get_object(Bucket="cat", Key=key)["Body"].read())) as im:
                        im.load()
                    whole += 1
                except OSError:
                    broken += 1
        outputs = sum(1 for k in keys if k.startswith("out/sku-"))
        table = list(csv.DictReader(io.StringIO(
            s3.get_object(Bucket="cat", Key="out/results.csv")["Body"].read().decode()))) \
            if "out/results.csv" in keys else []
        print(f"exit code           {done.returncode}")
        print(f"wall                {wall:.1f} s (storm {storm:.0f} s)")
        print(f"items done          {sum(r['status'] == 'done' for r in table)}/{args.items} in the bucket's results.csv")
        print(f"credits             {credits}")
        print(f"outputs in bucket   {outputs}; JPEG objects whole {whole}, broken {broken}")
        print(f"S3 calls            {proxy.stats['calls']}: forwarded {proxy.stats['forwarded']}, storm {args.storm_kind} "
              f"{proxy.stats['storm']}, random 503 {proxy.stats['503']}, 500 {proxy.stats['500']}, "
              f"resets {proxy.stats['reset']}")
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
        ok = done.returncode == 0 and credits == args.items and outputs == args.items and not broken
    moto.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
