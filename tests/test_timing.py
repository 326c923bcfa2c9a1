"""run/timing.py: a plan's inlined cost loop picks the same first check as the model's own CDF and moment."""
import math
import random

import pytest

from pipeline.run import timing
from pipeline.run.timing import OrderTimes


def _cheapest_by_definition(times: OrderTimes, lo: float, start: float, last: float, checks_left: int,
                            gap: float) -> float:
    """The plan written plainly with _cdf and _moment, as the docstring of _plan says it."""
    base_mass, base_moment = times._cdf(lo), times._moment(lo)
    best, least = last, math.inf
    for j in range(timing.PLAN_POINTS + 1):
        t = start * (last / start) ** (j / timing.PLAN_POINTS)
        step = max(gap, (last - t) / (checks_left - 1))
        cost, mass, moment = 0.0, base_mass, base_moment
        for i in range(checks_left):
            at = t + i * step
            if i:
                cost += timing.CHECK_PRICE * gap * (1.0 - mass)
            f, m = times._cdf(at), times._moment(at)
            cost += at * (f - mass) - (m - moment)
            mass, moment = f, m
        cost += (1.0 - mass) * timing.PARKED_COST * last
        if cost < least:
            best, least = t, cost
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_inlined_plan_is_the_plan_by_definition(seed):
    rng = random.Random(seed)
    times = OrderTimes(concurrency=rng.choice([4, 16, 100]))
    times.expect(rng.choice([0.5, 3.0, 15.0]))
    for n in range(rng.randint(20, 300)):
        lo = rng.random() * rng.choice([0.3, 2.0, 10.0])
        times.finished(str(n), lo, lo + rng.random() * rng.choice([0.2, 1.0, 5.0]))
    for lo in (0.0, 0.01, 0.3, 1.2, 5.0):
        for checks_left in (2, 3, 5, 20, 60):  # 60: a sandbox allowance
            for gap in (0.01, 0.1, 1.0):
                start = max(min(gap, timing.FIRST_FLOOR_S), lo)
                last = times.quantile(timing.COLLECT, above=lo) * timing.LAST_MARGIN
                if last <= start:
                    continue
                assert times._cheapest(lo, start, last, checks_left, gap) == \
                    _cheapest_by_definition(times, lo, start, last, checks_left, gap)
