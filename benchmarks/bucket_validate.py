"""How long `pipeline validate` takes on a catalog kept in an S3 bucket: N images, one manifest.

    python benchmarks/bucket_validate.py                 # 10,000 images
    python benchmarks/bucket_validate.py --images 2000 --image-kb 200

moto's S3 server (`moto_server`, from the test extra) runs as its own process on 127.0.0.1; the
bucket is filled with boto3 (not timed), then child processes run, each timed: `pipeline validate`
(nothing seen before: one listing page per 1,000 images, then one ranged GET per image, concurrently),
`pipeline run --dry-run` (reads and hashes every image, as a first run does; kept in the stat cache),
and `pipeline validate` again (unchanged images are not read: the listing alone). Each image is a
distinct JPEG of about --image-kb KB.

Then the client's CPU per whole-object GET, in this process (moto runs in its own, so
time.process_time() is the client's alone): --reads objects through `Remote.read_many` with s3fs
(`PIPELINE_BULK_READS=fsspec`) and with obstore (store/bulk.py), each timed --repeats times.

Not part of the test suite. Needs the test extra (moto[server], s3fs).
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jpeg_of(k: int, kb: int) -> bytes:
    """A distinct photo-like JPEG of about `kb` KB (noise compresses badly, so the size is steady)."""
    from PIL import Image
    side = max(64, int((kb * 1024 / 0.9) ** 0.5))
    im = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=40)
    return out.getvalue()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--image-kb", type=int, default=60)
    p.add_argument("--reads", type=int, default=1000, help="objects read per client in the CPU comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only-cpu", action="store_true", help="skip the pipeline commands")
    args = p.parse_args(argv)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="cat")
        started = time.monotonic()
        sample = [jpeg_of(k, args.image_kb) for k in range(64)]  # noise: 64 bodies, made distinct below

        def put(k: int) -> None:
            jpeg = sample[k % 64]  # made distinct by a comment segment after SOI: still a plain JPEG
            body = jpeg[:2] + b"\xff\xfe\x00\x06" + k.to_bytes(4, "big") + jpeg[2:]
            s3.put_object(Bucket="cat", Key=f"images/p{k:06d}.jpg", Body=body)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(args.images)))
        rows = "".join(f"sku-{k:06d},images/p{k:06d}.jpg,product {k}\n" for k in range(args.images))
        s3.put_object(Bucket="cat", Key="catalog.csv", Body=("id,image,title\n" + rows).encode())
        print(f"bucket filled: {args.images} images of ~{len(sample[0]) // 1024} KB in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
        client_cpu(env, args)
        if args.only_cpu:
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "catalog.yaml"
            config.write_text("manifest: s3://cat/catalog.csv\nprompt: '{title} on marble'\n"
                              "output: {dir: s3://cat/out}\nstate: {dir: state}\n")
            steps = [("validate, nothing seen before", "validate"),
                     ("run --dry-run (reads and hashes every image)", "run", "--dry-run", "--sandbox"),
                     ("validate again, images unchanged", "validate")]
            for what, *command in steps:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the moto server is not reaped yet
                started = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "pipeline", *command, str(config)], env=env,
                                      capture_output=True, text=True)
                wall = time.monotonic() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                if done.returncode != 0:
                    print(done.stdout, done.stderr, file=sys.stderr)
                    return 1
                print(f"{what}: {wall:.2f} s wall, {cpu:.2f} s CPU in pipeline, for {args.images} images")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


def client_cpu(env: dict, args: argparse.Namespace) -> None:
    """CPU and wall per GET of whole objects, s3fs against obstore, through the pipeline's own Remote."""
    os.environ.update(env)
    from pipeline.store.remote import Remote, forget_filesystems
    names = [f"p{k:06d}.jpg" for k in range(min(args.reads, args.images))]
    chosen = os.environ.get("PIPELINE_BULK_READS")  # what the pipeline commands below will use
    for client in ("fsspec", "obstore"):
        os.environ["PIPELINE_BULK_READS"] = "fsspec" if client == "fsspec" else ""
        forget_filesystems()
        store = Remote.open("s3://cat/images")
        store.read_many(names[:8])  # the client made, credentials read, connections opened
        for _ in range(args.repeats):
            cpu, started = time.process_time(), time.monotonic()
            got = store.read_many(names)
            cpu, wall = time.process_time() - cpu, time.monotonic() - started
            bad = sum(isinstance(v, BaseException) for v in got.values())
            print(f"{client}: {len(names)} GETs, {cpu / len(names) * 1000:.2f} ms client CPU per GET, "
                  f"{wall:.1f} s wall ({len(names) / wall:.0f} GETs/s), {bad} faults")
    os.environ.pop("PIPELINE_BULK_READS", None)
    if chosen is not None:
        os.environ["PIPELINE_BULK_READS"] = chosen


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
