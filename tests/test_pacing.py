"""The shared request gate: pauses everyone after a 429 and recovers gently."""
from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.lightx import pacing
from pipeline.lightx.pacing import Pacer


async def test_throttle_pauses_all_waiters():
    pacer = Pacer()
    pacer.throttled(0.2)
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert time.monotonic() - started >= 0.19


async def test_rate_is_capped_at_what_the_api_accepted_once_per_burst_and_recovers(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    pacer = Pacer()
    for _ in range(40):            # 40 requests, 36 accepted, over one second
        clock[0] += 0.025
        pacer._sent.append(clock[0])
        pacer.observe(False)
    pacer.throttled(0)
    first = pacer.rate
    assert first == pytest.approx(36, rel=0.2)
    pacer.throttled(0)             # later 429s answer requests sent before the cut: one cut only
    assert pacer.rate == first
    clock[0] += 3.0
    pacer._recover()
    assert pacer.rate is None or pacer.rate > first


def test_a_few_answers_are_too_few_to_cap_the_rate():
    pacer = Pacer()
    pacer.observe(False)
    pacer.throttled(1.0)
    assert pacer.rate is None


async def test_mostly_429s_pause_everyone(monkeypatch):
    pacer = Pacer()
    for _ in range(30):
        pacer.observe(True)
    pacer.throttled(0.2)
    started = time.monotonic()
    await pacer.acquire()
    assert time.monotonic() - started >= 0.19


async def test_fixed_rate_limits_requests():
    pacer = Pacer(requests_per_second=20)
    started = time.monotonic()
    for _ in range(30):
        await pacer.acquire()
    # a leaky bucket lets the first 20 through as a burst, the rest at 20/s
    assert time.monotonic() - started >= 0.4
