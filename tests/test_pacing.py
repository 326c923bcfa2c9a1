"""The shared request gate: pauses everyone after a 429 and recovers gently."""
from __future__ import annotations

import asyncio
import time

from pipeline import pacing
from pipeline.pacing import Pacer


async def test_throttle_pauses_all_waiters():
    pacer = Pacer()
    pacer.throttled(0.2)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert time.monotonic() - started >= 0.19


async def test_rate_halves_once_per_burst_and_recovers(monkeypatch):
    pacer = Pacer()
    for _ in range(40):
        await pacer.acquire()
    pacer.throttled(0)
    first = pacer.rate
    assert first is not None and first >= pacing.MIN_RATE
    pacer.throttled(0)  # a burst of 429s answers requests sent before the cut: one cut only
    assert pacer.rate == first
    clock = [time.monotonic()]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    clock[0] += 3.0
    pacer._recover()
    assert pacer.rate is None or pacer.rate > first


async def test_fixed_rate_limits_requests():
    pacer = Pacer(requests_per_second=20)
    started = time.monotonic()
    for _ in range(30):
        await pacer.acquire()
    # a leaky bucket lets the first 20 through as a burst, the rest at 20/s
    assert time.monotonic() - started >= 0.4
