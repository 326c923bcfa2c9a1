"""The shared request gate: pauses everyone after a 429 and recovers gently. Every test runs on an
event loop whose clock the test moves (helpers.VirtualTimeLoop), so each wait is exact."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from helpers import run_on_virtual_time
from pipeline.lightx import pacing
from pipeline.lightx.pacing import Pacer


@pytest.fixture
def on_virtual_time(monkeypatch):
    """Run a coroutine function on a VirtualTimeLoop, the pacer reading that loop's clock."""
    def run(test):
        async def main():
            monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=asyncio.get_running_loop().time))
            return await test(asyncio.get_running_loop())
        return run_on_virtual_time(main())
    return run


def test_throttle_pauses_all_waiters(on_virtual_time):
    async def test(loop):
        pacer = Pacer()
        started = loop.time()
        pacer.throttled(0.2)  # the only answer so far is a 429: everyone waits out Retry-After

        async def one() -> float:
            await pacer.acquire()
            return loop.time() - started
        return await asyncio.gather(*(one() for _ in range(5)))
    assert on_virtual_time(test) == [pytest.approx(0.2, abs=1e-3)] * 5


def test_rate_is_capped_at_what_the_api_accepted_once_per_burst_and_recovers(on_virtual_time):
    async def test(loop):
        pacer = Pacer()
        rates = []
        for i in range(40):  # 40 requests over one second: 36 accepted, the last 4 answered 429
            await asyncio.sleep(0.025)
            await pacer.acquire()
            if i < 36:
                pacer.observe(False)
            else:
                pacer.throttled(0)
                rates.append(pacer.rate)
        await asyncio.sleep(3.0)
        await pacer.acquire()  # three quiet seconds later
        return rates, pacer.rate
    rates, recovered = on_virtual_time(test)
    # the first 429 came 0.9 s after the first answer, 36 answers accepted in between: 40 a second
    assert rates[0] == pytest.approx(36 / 0.9, rel=1e-4)
    assert rates == [rates[0]] * 4  # later 429s answer requests sent before the cut: one cut only
    assert recovered == pytest.approx(rates[0] * 1.15 ** 3, rel=1e-4)  # +15 % a second


def test_a_few_answers_are_too_few_to_cap_the_rate():
    pacer = Pacer()
    pacer.observe(False)
    pacer.throttled(1.0)
    assert pacer.rate is None


def test_mostly_429s_pause_everyone(on_virtual_time):
    async def test(loop):
        pacer = Pacer()
        for _ in range(30):
            pacer.observe(True)
        pacer.throttled(0.2)
        started = loop.time()
        await pacer.acquire()
        return loop.time() - started, pacer.rate
    waited, rate = on_virtual_time(test)
    assert waited == pytest.approx(0.2, abs=1e-3)
    assert rate == pacing.MIN_RATE  # nothing accepted: the floor


def test_fixed_rate_limits_requests(on_virtual_time):
    async def test(loop):
        pacer = Pacer(requests_per_second=20)
        started, sent = loop.time(), []
        for _ in range(30):
            await pacer.acquire()
            sent.append(loop.time() - started)
        return sent
    sent = on_virtual_time(test)
    # a leaky bucket lets the first 20 through as a burst, the rest at 20/s
    assert sent[:20] == [0.0] * 20
    assert sent[29] == pytest.approx(0.5, abs=0.05)
