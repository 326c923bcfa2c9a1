"""When the first status check of an order goes out: learnt from this run's orders, without drift."""
from __future__ import annotations

import random

import pytest

from pipeline.stages.context import Context


def simulate(ctx: Context, times, *, interval: float, rtt: float, in_flight: int) -> list[int]:
    """Poll orders as the poll stage does, `in_flight` at a time: every order of a round has its
    first check set before any of them answers, as in a run. The checks each order took."""
    checks = []
    for start in range(0, len(times), in_flight):
        first = ctx.first_poll_after(interval)
        answers = []
        for finish in times[start:start + in_flight]:
            sent, n = first, 1
            while finish > sent:  # still running when this check reached the API
                sent, n = sent + interval, n + 1
            answers.append((n == 1, sent + rtt))  # the answer comes back one round trip later
            checks.append(n)
        for at_first, by_s in answers:
            ctx.order_finished(at_first, by_s, interval, in_flight)
    return checks


def new_context() -> Context:
    return Context(cfg=None, client=None, ckpt=None, session=None, api_id="a", source_dir=None)


def test_before_any_order_finished_the_first_check_waits_one_interval():
    assert new_context().first_poll_after(3.0) == 3.0


@pytest.mark.parametrize("rtt", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("in_flight", [1, 16, 200])
def test_a_fixed_order_time_is_found_and_the_round_trip_does_not_ratchet_it_up(rtt, in_flight):
    ctx = new_context()
    checks = simulate(ctx, [0.5] * 20 * in_flight, interval=0.1, rtt=rtt, in_flight=in_flight)
    assert 0.4 <= ctx.first_check_s <= 0.5 + 0.1 + rtt
    last = checks[-5 * in_flight:]
    assert sum(last) / len(last) < 1.8  # mostly one check, sometimes two


@pytest.mark.parametrize("in_flight", [1, 16, 200])
def test_spread_order_times_settle_near_their_median_and_within_five_checks(in_flight):
    rng = random.Random(7)
    ctx = new_context()
    times = [rng.uniform(15, 30) for _ in range(40 * in_flight)]
    seen = []
    for start in range(0, len(times), in_flight):
        simulate(ctx, times[start:start + in_flight], interval=3.0, rtt=0.2, in_flight=in_flight)
        seen.append(ctx.first_check_s)
    settled = seen[len(seen) // 2:]
    assert 19 <= min(settled) and max(settled) <= 26  # the median is 22.5; 5 checks reach 30 from 18


def test_never_sooner_than_the_interval():
    ctx = new_context()
    simulate(ctx, [0.01] * 200, interval=3.0, rtt=0.0, in_flight=8)
    assert ctx.first_poll_after(3.0) == 3.0
