"""LightX's own example flow, one item after another, as the baseline `pipeline run` is compared with.

    python benchmarks/lightx_example.py BASE_URL KEY IMAGE [IMAGE ...] [--interval 3] [--checks 5]

Written for this benchmark after the shape of LightX's published example clients (the idea, not
their code): for each image ask for an upload slot, PUT the bytes, submit, check the order at once
and then every `--interval` seconds up to `--checks` times, and download the output. Only the
standard library, so it measures the flow, not a client library. Prints one JSON line:
{"items", "done", "wall_s", "requests"}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request


def _post(base: str, key: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "x-api-key": key})
    with urllib.request.urlopen(request, timeout=60) as resp:
        doc = json.load(resp)
    if doc.get("statusCode") != 2000:
        raise RuntimeError(f"{path}: statusCode {doc.get('statusCode')}: {doc.get('message')}")
    return doc["body"]


def one(base: str, key: str, image: str, prompt: str, interval: float, checks: int) -> tuple[bool, int]:
    """Run one image through the example flow; (done, requests made)."""
    data = open(image, "rb").read()
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    slot = _post(base, key, "v2/uploadImageUrl", {"uploadType": "imageUrl", "size": len(data), "contentType": kind})
    put = urllib.request.Request(slot["uploadImage"], data=data, method="PUT", headers={"Content-Type": kind})
    urllib.request.urlopen(put, timeout=60).close()
    order = _post(base, key, "v1/background-generator", {"imageUrl": slot["imageUrl"], "textPrompt": prompt})
    requests = 3
    for attempt in range(checks):
        status = _post(base, key, "v1/order-status", {"orderId": order["orderId"]})
        requests += 1
        if status["status"] == "active":
            with urllib.request.urlopen(status["output"], timeout=60) as resp:
                resp.read()
            return True, requests + 1
        if status["status"] == "failed":
            return False, requests
        if attempt + 1 < checks:
            time.sleep(interval)
    return False, requests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("base_url")
    p.add_argument("key")
    p.add_argument("images", nargs="+")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between checks (LightX's example: 3)")
    p.add_argument("--checks", type=int, default=5, help="status checks per order (LightX's example: 5)")
    p.add_argument("--prompt", default="a product on a white marble counter, soft light")
    args = p.parse_args(argv)
    started = time.perf_counter()
    done = requests = 0
    for image in args.images:
        ok, made = one(args.base_url.rstrip("/"), args.key, image, args.prompt, args.interval, args.checks)
        done += ok
        requests += made
    print(json.dumps({"items": len(args.images), "done": done, "wall_s": round(time.perf_counter() - started, 3),
                      "requests": requests}))
    return 0 if done == len(args.images) else 1


if __name__ == "__main__":
    sys.exit(main())
