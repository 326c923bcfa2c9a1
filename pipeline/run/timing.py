"""How long orders take, learnt from the status checks themselves; when to check each order next.

    times = OrderTimes(concurrency=16, history=ckpt.order_times("lightx"))
    times.expect(15.0)            # a submit answer's avgResponseTimeInSec: the prior, if no history
    due = times.next_check(submitted_at, seen_init_s, checked_at, checks_left, gap)
    times.alive(order_id, 4.2)    # seen `init` 4.2 s after its submit: its time T > 4.2
    times.finished(order_id, 4.2, 7.9)   # seen done at 7.9 s: T lies in (4.2, 7.9]

Every check is an interval-censored observation of an order's time T, and the estimate of T's
distribution is the nonparametric maximum-likelihood one for such data: Turnbull's self-consistency
EM (J. R. Stat. Soc. B, 1976), here on a log-spaced grid, with orders still running counted as
right-censored at their last `init`. A broad log-normal prior of small weight, centred on the API's
hint or on earlier runs, keeps tails to extrapolate into. The allowed checks of an order are spread
over the distribution of the time it has left: with r checks left, the next one goes where a
1/r share of the orders still running at that age are done, the last one where 99.5 % are. A few
orders are checked early on purpose (exploration): a check that finds an order done gives only an
upper bound, so without it an estimate that is too slow could never learn that orders are faster.
"""
from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import Counter, deque
from itertools import accumulate
from operator import mul, sub
from typing import Iterable

GRID_MIN_S, GRID_MAX_S, BINS = 0.02, 7200.0, 128
DEFAULT_PRIOR_S = 15.0      # LightX's documented avgResponseTimeInSec
PRIOR_SIGMA = 1.0           # log-normal width of the prior: its 1st..99th percentiles span 100x
PRIOR_WEIGHT = 0.1         # in orders: the data outweighs it from the first order on
WINDOW = 2000               # finished orders the estimate remembers: it follows an API that changes
COLLECT = 0.995             # the last allowed check goes where this share of orders is done
LAST_MARGIN = 1.05          # and half a grid bin later: an estimate bounded by checks that found orders done
                            # ends just below them, and orders that all take one time would be missed
EXTRA = 0.99                # a parked order's one check per later run waits this quantile
FIRST_FLOOR_S = 0.5         # no first check sooner after the submit than min(this, poll.interval_s)
GOLDEN = (math.sqrt(5) - 1) / 2
SMOOTH = 0.1                # EMS: share of each bin passed to each neighbour per EM step
EXPLORE_FIRST = 0.25        # share of orders checked early on purpose while nothing is known
EXPLORE_LEAST = 0.03        # share of orders checked early on purpose, however much is known
PLAN_POINTS = 16            # candidate times per plan of a next check
REPLAN = 0.03               # plans are made again when a quantile of the estimate moves by 3 %
PARKED_COST = 10.0          # an order left for the next run weighs as a wait of 10x the planned span
CHECK_PRICE = 0.5           # a check that finds an order still running weighs as a wait of half a
                            # poll.interval_s: status checks are client CPU and API load, not free (#21)

_LOG_MIN = math.log(GRID_MIN_S)
_STEP = (math.log(GRID_MAX_S) - _LOG_MIN) / BINS


class Clock:
    """Wall-clock seconds; tests pass a faster one, shared with the sandbox, to run long orders fast."""

    def now(self) -> float:
        return time.time()

    def real(self, seconds: float) -> float:
        """How many real seconds `seconds` of this clock take."""
        return seconds


class ScaledClock(Clock):
    """A clock that runs `factor` times faster than the wall clock, from now on."""

    def __init__(self, factor: float):
        self.factor = factor
        self._origin = time.time()

    def now(self) -> float:
        return self._origin + (time.time() - self._origin) * self.factor

    def real(self, seconds: float) -> float:
        return seconds / self.factor


def _bin(t: float) -> int:
    """Index of the grid bin holding `t` seconds (bin k spans edge(k)..edge(k+1))."""
    if t <= GRID_MIN_S:
        return 0
    return min(BINS - 1, int((math.log(t) - _LOG_MIN) / _STEP))


_CENTRES = [math.exp(_LOG_MIN + (k + 0.5) * _STEP) for k in range(BINS)]


def _log_normal(median: float) -> list[float]:
    mu = math.log(median)
    cdf = [0.5 * (1 + math.erf((_LOG_MIN + k * _STEP - mu) / (PRIOR_SIGMA * math.sqrt(2))))
           for k in range(BINS + 1)]
    cdf[0], cdf[-1] = 0.0, 1.0  # the end bins take the tails
    mass = [max(1e-12, b - a) for a, b in zip(cdf, cdf[1:])]
    total = sum(mass)
    return [m / total for m in mass]


class OrderTimes:
    """The distribution of order times (submit to done), and the check schedule drawn from it."""

    def __init__(self, *, concurrency: int = 16, history: Iterable[tuple[float, float]] = (),
                 clock: Clock | None = None):
        self.clock = clock or Clock()
        self._concurrency = max(1, concurrency)
        self._patterns: Counter[tuple[int, int]] = Counter()  # (first bin, last bin) -> orders
        self._done: deque[tuple[int, int]] = deque()          # finished orders, oldest first
        self._alive: dict[str, tuple[int, int]] = {}         # running orders: (bin of last init, last)
        history = list(history)[-WINDOW:]
        for lo, hi in history:
            self._add_done(lo, hi)
        centre = DEFAULT_PRIOR_S
        if history:  # centre the prior on what earlier runs saw
            centre = math.exp(sorted(math.log(max(GRID_MIN_S, (lo + hi) / 2)) for lo, hi in history)[len(history) // 2])
        self._hinted = bool(history)  # earlier runs outweigh the API's word
        self._prior, self._centre = _log_normal(centre), centre
        self._p = list(self._prior)
        self._cum: list[float] = []
        self._mom: list[float] = []
        self._plans: dict[tuple, float] = {}
        self._shape: list[float] = []  # a few quantiles of the estimate the current plans were made on
        self._explorers = 0
        self._explore_credit = 1.0  # the first order explores
        self._pending = 1
        self._fitted_at = 0.0
        self._changed: asyncio.Future | None = None
        self._fit(iterations=200)

    # -- what the API tells ------------------------------------------------------

    def expect(self, avg_s: float | None) -> None:
        """avgResponseTimeInSec from a submit answer: the prior's centre, unless earlier runs are known."""
        if self._hinted or not avg_s:
            return
        self._hinted = True
        self._centre = min(max(avg_s, GRID_MIN_S), GRID_MAX_S)
        self._prior = _log_normal(self._centre)
        self._p = list(self._prior)
        self._pending += 1
        self._fit(iterations=200)

    def alive(self, order_id: str, elapsed_s: float) -> None:
        """The order was still `init` `elapsed_s` after its submit."""
        old = self._alive.get(order_id)
        new = (_bin(elapsed_s), BINS - 1)
        if old == new:
            return
        if old is not None:
            self._drop(old)
        self._alive[order_id] = new
        self._patterns[new] += 1
        self._observed()

    def finished(self, order_id: str, lo_s: float, hi_s: float) -> None:
        """The order was seen done (active or failed) `hi_s` after its submit, last seen running at lo_s."""
        old = self._alive.pop(order_id, None)
        if old is not None:
            self._drop(old)
        self._add_done(lo_s, hi_s)
        while len(self._done) > WINDOW:
            self._drop(self._done.popleft())
        self._observed()

    def forget(self, order_id: str) -> None:
        """The order leaves this run unresolved (parked, or its status check failed)."""
        old = self._alive.pop(order_id, None)
        if old is not None:
            self._drop(old)

    # -- what the schedule asks -------------------------------------------------

    def quantile(self, level: float, above: float = 0.0) -> float:
        """Seconds by which `level` of the orders still running at `above` s are done."""
        cum = self._cum
        base = self._cdf(above) if above > 0 else 0.0
        target = min(1.0 - 1e-9, base + level * (1.0 - base))
        k = min(BINS - 1, max(0, bisect.bisect_right(cum, target) - 1))
        mass = cum[k + 1] - cum[k]
        frac = (target - cum[k]) / mass if mass > 0 else 1.0
        return max(above, math.exp(_LOG_MIN + (k + min(1.0, max(0.0, frac))) * _STEP))

    def next_check(self, submitted_at: float, seen_init_s: float, checked_at: float | None,
                   checks_left: int, gap: float, explore: float | None = None) -> float:
        """When (clock time) to check an order next. `checks_left` <= 0: its allowance is spent in
        earlier runs, and its one check of this run waits for almost all orders (EXTRA) after its last."""
        if checks_left <= 0:
            return (checked_at or submitted_at) + max(gap, self.quantile(EXTRA))
        floor = min(gap, FIRST_FLOOR_S)
        wait = self._plan(seen_init_s, checks_left, gap, floor)
        start = floor if checked_at is None else max(floor, seen_init_s + gap)
        if explore is not None and wait > start:
            wait = start * (wait / start) ** explore  # log-uniform between now-at-the-earliest and the plan
        due = submitted_at + max(wait, floor)
        return due if checked_at is None else max(due, checked_at + gap)

    def _plan(self, lo: float, checks_left: int, gap: float, floor: float) -> float:
        """Seconds after submit for the next check of an order seen running at `lo` s, `checks_left`
        allowed: the time that least delays collecting it, if the later checks are spread evenly
        (at least `gap` apart) up to where 99.5 % of such orders are done. Where orders finish
        within a gap of each other, that is one check when nearly all are done; where they spread
        over many gaps, checks spaced through the spread. Cached until the estimate changes."""
        key = (_bin(lo) if lo > 0 else -1, checks_left, gap, floor)
        best = self._plans.get(key)
        if best is not None:
            return best
        last = self.quantile(COLLECT, above=lo) * LAST_MARGIN
        start = max(floor, lo)
        if checks_left == 1 or last <= start:
            best = last
        else:
            best = self._cheapest(lo, start, last, checks_left, gap)
        if lo <= 0 and not self._done:
            # Nothing finished yet, here or in earlier runs: the first check goes at the API's own
            # estimate (or sooner). If it is right, orders are collected at once and teach the rest;
            # if it is wrong, early explorers and the censored checks correct it.
            best = min(best, self._centre)
        self._plans[key] = best
        return best

    def _cheapest(self, lo: float, start: float, last: float, checks_left: int, gap: float) -> float:
        """The first check's time among PLAN_POINTS candidates in [start, last] that costs least:
        the wait of the orders each check collects, a price per further check, the parked ones.

        The hot loop of a plan (#21): _cdf and _moment inlined, one position per time for both, the
        same arithmetic as theirs. Every term a check adds is a wait or a price, never negative, so a
        candidate is dropped as soon as its cost so far reaches the best one's: it cannot win (ties
        go to the earlier candidate, as without the cut). That halves the loop's work."""
        cum, mom, log, log_min, step_k, top = self._cum, self._mom, math.log, _LOG_MIN, _STEP, BINS - 1
        base_mass, base_moment = self._cdf(lo), self._moment(lo)
        price, parked = CHECK_PRICE * gap, PARKED_COST * last
        best, least = last, math.inf
        for j in range(PLAN_POINTS + 1):
            t = start * (last / start) ** (j / PLAN_POINTS)
            step = max(gap, (last - t) / (checks_left - 1))
            cost, mass, moment = 0.0, base_mass, base_moment
            for i in range(checks_left):  # each check collects the orders done since the one before
                at = t + i * step
                if i:  # a further check of the orders still running: a request, priced as a gap's wait
                    cost += price * (1.0 - mass)
                x = (log(at if at > GRID_MIN_S else GRID_MIN_S) - log_min) / step_k
                k = int(x) if at > GRID_MIN_S else 0
                if k > top:
                    k = top
                frac = x - k
                frac = 1.0 if frac > 1.0 else 0.0 if frac < 0.0 else frac
                c0, m0 = cum[k], mom[k]
                f = c0 + (cum[k + 1] - c0) * frac
                m = m0 + (mom[k + 1] - m0) * frac
                cost += at * (f - mass) - (m - moment)
                mass, moment = f, m
                if cost >= least:
                    break
            else:
                cost += (1.0 - mass) * parked
                if cost < least:
                    best, least = t, cost
        return best

    def explore(self, later_orders: int | None = None) -> float | None:
        """For a new order: a point in [0, 1) to pull its checks earlier by, or None (most orders).
        A quarter of the first orders explore, one in 20 once a round of orders is known, 3 % in the
        long run: an early check that finds an order running costs it a whole poll.interval_s. The
        share is kept by error diffusion, not by chance, so even a small first round has explorers.
        Once any order is known, orders of a run's last round (fewer than a round of `later_orders`
        to come) do not explore: what they would learn comes too late, and their wait is the run's."""
        known = len(self._done)
        if later_orders is not None and later_orders < self._concurrency and known:
            return None
        self._explore_credit += max(EXPLORE_LEAST, EXPLORE_FIRST * self._concurrency
                                    / (self._concurrency + 4 * known))
        if self._explore_credit < 1.0:
            return None
        self._explore_credit -= 1.0
        return self.explore_again()

    def explore_again(self) -> float:
        """The next point for an explorer. Explorers take turns along a golden-ratio sequence, so the
        first few already span the range from the earliest check to the plan evenly (in log time)."""
        point = (self._explorers * GOLDEN) % 1.0
        self._explorers += 1
        return point

    async def wait(self, delay: float) -> bool:
        """Sleep `delay` clock seconds; True if the estimate changed first (plan the check again)."""
        if delay <= 0:
            return False
        loop = asyncio.get_running_loop()
        if self._changed is None or self._changed.done():
            self._changed = loop.create_future()
        changed, woke = self._changed, loop.create_future()

        def wake(flag: bool) -> None:
            if not woke.done():
                woke.set_result(flag)

        timer = loop.call_later(self.clock.real(delay), wake, False)
        on_change = lambda _f: wake(True)  # noqa: E731
        changed.add_done_callback(on_change)
        try:
            return await woke
        finally:
            timer.cancel()
            changed.remove_done_callback(on_change)

    # -- the estimate -----------------------------------------------------------

    def _add_done(self, lo: float, hi: float) -> None:
        lo_bin, hi_bin = (_bin(lo) if lo > 0 else 0), _bin(hi)
        pattern = (min(lo_bin, hi_bin), hi_bin)
        self._done.append(pattern)
        self._patterns[pattern] += 1

    def _drop(self, pattern: tuple[int, int]) -> None:
        self._patterns[pattern] -= 1
        if self._patterns[pattern] <= 0:
            del self._patterns[pattern]

    def _observed(self) -> None:
        self._pending += 1
        now = time.monotonic()
        # Refit after each new tenth of the data, or a second after news: early orders move the
        # schedule at once, and a long run pays for few fits.
        if self._pending >= max(1.0, 0.1 * len(self._done)) or now - self._fitted_at > 1.0:
            self._fit()

    def _fit(self, iterations: int = 10) -> None:
        """Self-consistency (EM) steps from the current estimate until it stops moving."""
        if not self._pending:
            return
        patterns = list(self._patterns.items())
        weight = PRIOR_WEIGHT + sum(n for _, n in patterns)
        prior = [PRIOR_WEIGHT * x / weight for x in self._prior]
        keep, spill = 1 - 2 * SMOOTH, SMOOTH
        p = self._p
        for _ in range(iterations):
            cum = list(accumulate(p, initial=0.0))
            factor = [0.0] * (BINS + 1)
            for (i, j), n in patterns:
                share = cum[j + 1] - cum[i]
                if share > 0:
                    factor[i] += n / share
                    factor[j + 1] -= n / share
            step = [a + x * f / weight for a, x, f in zip(prior, p, accumulate(factor))]
            # Smoothed EM (EMS, Silverman et al. 1990): a little smoothing each step keeps the estimate
            # from piling up just below the times orders happened to be checked at.
            new = [keep * b + spill * (a + c) for a, b, c in zip([step[0], *step], step, [*step[1:], step[-1]])]
            moved = max(map(abs, map(sub, new, p)))
            p = new
            if moved < 2e-4:
                break
        self._p = p
        self._cum = list(accumulate(p, initial=0.0))
        self._mom = list(accumulate(map(mul, p, _CENTRES), initial=0.0))
        self._pending = 0
        self._fitted_at = time.monotonic()
        # Waiting orders plan again only when the estimate moved enough to move their checks.
        shape = [self.quantile(q) for q in (0.1, 0.5, 0.9, COLLECT)]
        if self._shape and all(abs(math.log(a / b)) < REPLAN for a, b in zip(shape, self._shape)):
            return
        self._shape = shape
        self._plans = {}
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def _cdf(self, t: float) -> float:
        k, frac = _position(t)
        return self._cum[k] + (self._cum[k + 1] - self._cum[k]) * frac

    def _moment(self, t: float) -> float:
        """E[T; T <= t], the partial first moment."""
        k, frac = _position(t)
        return self._mom[k] + (self._mom[k + 1] - self._mom[k]) * frac


def _position(t: float) -> tuple[int, float]:
    k = _bin(t)
    return k, min(1.0, max(0.0, (math.log(max(t, GRID_MIN_S)) - _LOG_MIN) / _STEP - k))
