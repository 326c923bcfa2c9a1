"""When the first status check of an order goes out: learnt from this run's orders, without drift."""
from __future__ import annotations

import random

import pytest

from pipeline.stages.context import Context


def simulate(ctx: Context, times, *, interval: float, rtt: float, in_flight: int, limit: int = 5) -> list[int]:
    """Poll orders as the poll stage does, `in_flight` at a time: every order of a round has its
    first check set before any of them answers, as in a run. Returns the checks each order took,
    or limit + 1 for one still running after `limit` checks (parked for the next run)."""
    checks = []
    for start in range(0, len(times), in_flight):
        first = ctx.first_poll_after(interval)
        answers = []
        for finish in times[start:start + in_flight]:
            order = [(finish <= first + k * interval, first + k * interval + rtt) for k in range(limit)]
            answers.append(order)
            done_at = [k for k, (done, _) in enumerate(order) if done]
            checks.append(done_at[0] + 1 if done_at else limit + 1)
        for order in answers:  # as the poll stage reports them: the first check, and later ones
            for k, (done, elapsed) in enumerate(order):  # only while nothing is known yet
                if k == 0 or ctx.first_check_s is None:
                    ctx.first_check(done, elapsed, in_flight, interval)
                if done:
                    break
    return checks


def new_context() -> Context:
    return Context(cfg=None, client=None, ckpt=None, session=None, api_id="a", source_dir=None)


def test_before_anything_is_known_the_first_check_waits_one_interval():
    assert new_context().first_poll_after(3.0) == 3.0


def test_the_apis_average_is_where_it_starts():
    ctx = new_context()
    ctx.expect(None)
    assert ctx.first_poll_after(3.0) == 3.0
    ctx.expect(15.0)
    ctx.expect(40.0)  # the first answer sets it; learning takes over from there
    assert ctx.first_poll_after(3.0) == 15.0


@pytest.mark.parametrize("rtt", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("in_flight", [1, 16, 200])
def test_a_fixed_order_time_is_found_and_the_round_trip_does_not_ratchet_it_up(rtt, in_flight):
    ctx = new_context()
    checks = simulate(ctx, [0.5] * 30 * in_flight, interval=0.1, rtt=rtt, in_flight=in_flight)
    assert 0.4 <= ctx.first_check_s <= 0.6
    last = checks[-5 * in_flight:]
    assert sum(last) / len(last) < 1.8  # mostly one check, sometimes two


@pytest.mark.parametrize("prior", [None, 15.0, 3.0, 60.0])
@pytest.mark.parametrize("in_flight", [1, 16, 200])
def test_spread_order_times_settle_near_their_median_and_within_five_checks(prior, in_flight):
    rng = random.Random(7)
    ctx = new_context()
    ctx.expect(prior)
    times = [rng.uniform(10, 30) for _ in range(60 * max(in_flight, 4))]
    checks = simulate(ctx, times, interval=3.0, rtt=0.2, in_flight=in_flight)
    settled = []
    for start in range(len(times) // 2, len(times), in_flight):
        simulate(ctx, times[start:start + in_flight], interval=3.0, rtt=0.2, in_flight=in_flight)
        settled.append(ctx.first_check_s)
    assert 15 <= min(settled) and max(settled) <= 25  # the median is 20; 5 checks reach 30 from 18
    late = checks[len(checks) // 2:]
    assert sum(c > 5 for c in late) / len(late) < 0.05  # hardly any order outlives its 5 checks


def test_never_sooner_than_the_interval_and_quick_to_climb_back():
    ctx = new_context()
    simulate(ctx, [0.01] * 200, interval=3.0, rtt=0.0, in_flight=8)
    assert ctx.first_check_s == 3.0
    simulate(ctx, [6.5] * 8 * 10, interval=3.0, rtt=0.0, in_flight=8)  # orders got slower
    assert ctx.first_check_s > 4.5
