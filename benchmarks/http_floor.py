"""What one HTTP request costs in CPU through bare aiohttp on this machine, with no pipeline code.

    python benchmarks/http_floor.py                  # 20,000 requests, 200 at a time, 3 rounds

The floor under `pipeline run`'s own per-request cost: keep-alive JSON POSTs (v2/uploadImageUrl, the
cheapest real API call) to `pipeline sandbox --fast` running as its own process, so only this
process's CPU is counted. An item of a run needs about 5.5 requests; multiply to see how much of a
per-item CPU budget the HTTP library alone takes here.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

from bench_runner import SANDBOX_KEY, Sandbox


async def per_request_cpu_ms(base_url: str, requests: int, concurrency: int) -> float:
    url = f"{base_url}/v2/uploadImageUrl"
    body = json.dumps({"uploadType": "imageUrl", "size": 1000, "contentType": "image/jpeg"}).encode()
    headers = {"x-api-key": SANDBOX_KEY, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    resp.raise_for_status()

        await asyncio.gather(*(worker(5) for _ in range(concurrency)))  # connections open, caches warm
        started = time.process_time()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return (time.process_time() - started) / (requests // concurrency * concurrency) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with Sandbox() as sandbox:
        figures = [asyncio.run(per_request_cpu_ms(sandbox.base_url, args.requests, args.concurrency))
                   for _ in range(args.rounds)]
    print(f"bare aiohttp {aiohttp.__version__}: " + ", ".join(f"{f:.3f}" for f in figures)
          + f" ms CPU per request ({args.requests} requests, {args.concurrency} at a time, per round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
