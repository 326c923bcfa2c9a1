"""What one HTTP request costs in CPU through bare aiohttp, and through the run's own Wire, here.

    python benchmarks/http_floor.py                  # 20,000 requests, 200 at a time, 3 rounds, both clients
    python benchmarks/http_floor.py --requests 4000 --concurrency 100 --pause-ms 400   # spread as a run's
    python benchmarks/http_floor.py --client wire    # lightx/wire.py alone

The floor under `pipeline run`'s own per-request cost: keep-alive JSON POSTs (v2/uploadImageUrl, the
cheapest real API call) to `pipeline sandbox --fast` running as its own process, so only this
process's CPU is counted. An item of a run needs about 5.5 requests; multiply to see how much of a
per-item CPU budget the HTTP library alone takes here.

--pause-ms N: each of the concurrent workers pauses a random 0-N ms after each answer, so the
requests are spread over time as a run's are (a run's 1,000 items make about 800 a second). A
request then costs more: each wake-up of the loop finds fewer answers. The loop is the run's
(run/loop.py: uvloop's where installed; PIPELINE_EVENT_LOOP=asyncio for asyncio's).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import aiohttp

from bench_runner import SANDBOX_KEY, Sandbox
from pipeline.lightx.wire import Wire
from pipeline.run import loop  # the run's own loop: uvloop's where installed


async def per_request_cpu_ms(base_url: str, requests: int, concurrency: int, pause_ms: float = 0.0,
                             client: str = "aiohttp") -> float:
    url = f"{base_url}/v2/uploadImageUrl"
    body = json.dumps({"uploadType": "imageUrl", "size": 1000, "contentType": "image/jpeg"}).encode()
    headers = {"x-api-key": SANDBOX_KEY, "Content-Type": "application/json"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) if client == "aiohttp" \
        else Wire(limit=concurrency)
    async with session:
        async def post() -> None:
            if client == "aiohttp":
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    resp.raise_for_status()
            elif (await session.request("POST", url, body=body, headers=headers)).status != 200:
                raise RuntimeError("the sandbox refused a request")

        async def worker(count: int) -> None:
            for _ in range(count):
                await post()
                if pause_ms:
                    await asyncio.sleep(random.random() * pause_ms / 1000)

        await asyncio.gather(*(worker(5) for _ in range(concurrency)))  # connections open, caches warm
        started = time.process_time()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return (time.process_time() - started) / (requests // concurrency * concurrency) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pause-ms", type=float, default=0.0,
                   help="each worker pauses a random 0..N ms after each answer (default 0: back to back)")
    p.add_argument("--client", choices=("aiohttp", "wire", "both"), default="both",
                   help="bare aiohttp, the run's Wire (lightx/wire.py), or both in turn (default)")
    args = p.parse_args(argv)
    clients = ("aiohttp", "wire") if args.client == "both" else (args.client,)
    figures: dict[str, list[float]] = {c: [] for c in clients}
    with Sandbox() as sandbox:
        for _ in range(args.rounds):  # interleaved, so both meet the same phase of a noisy VM
            for c in clients:
                figures[c].append(loop.run(per_request_cpu_ms(sandbox.base_url, args.requests, args.concurrency,
                                                              args.pause_ms, c)))
    for c in clients:
        label = f"bare aiohttp {aiohttp.__version__}" if c == "aiohttp" else "the run's Wire"
        print(f"{label}: " + ", ".join(f"{f:.3f}" for f in figures[c])
              + f" ms CPU per request ({args.requests} requests, {args.concurrency} at a time"
              + (f", pauses of 0-{args.pause_ms:g} ms" if args.pause_ms else "") + ", per round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
