"""One request gate shared by the whole run: an optional fixed rate, and a slowdown after 429s.

After a 429 the run's API request rate is capped at what the API accepted (non-429 answers per
second) over the last couple of seconds; the cap then grows back by 15% a second while the API
keeps accepting. When most recent answers are 429s, everyone also waits out Retry-After. This is
additive-increase / multiplicative-decrease in spirit (TCP congestion control), measured so that a
few random 429s do not collapse throughput. Rate limiting itself is aiolimiter's leaky bucket.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the first limiter made: most runs have no rate set and see no 429
    from aiolimiter import AsyncLimiter

MIN_RATE = 1.0          # requests per second; never slower than this
RECOVERY = 1.15         # growth of the cap per second without a cut
WINDOW_S = 2.0          # how far back sent and accepted rates are measured
CUT_EVERY_S = 1.0       # at most one cut per this long: later 429s answer requests sent before it
SATURATED = 0.5         # share of 429s in the window above which everyone waits out Retry-After
MIN_SAMPLE = 20         # answers in the window needed before a rate is measured and capped


class Pacer:
    """Shared gate: ``await pacer.acquire()`` before each API request, ``observe()`` each answer."""

    def __init__(self, requests_per_second: float | None = None):
        self._fixed = _limiter(requests_per_second) if requests_per_second else None
        self._ceiling = requests_per_second
        self._adaptive: AsyncLimiter | None = None
        self.rate: float | None = None       # current adaptive cap, None when not throttled
        self._changed_at = 0.0
        self._paused_until = 0.0
        self._sent: deque[float] = deque()
        self._answers: deque[tuple[float, bool]] = deque()  # (time, was a 429)
        self.throttle_events = 0

    async def acquire(self) -> None:
        while (delay := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        if self._fixed is not None:
            await self._fixed.acquire()
        if self._adaptive is not None:
            self._recover()
            if self._adaptive is not None:
                await self._adaptive.acquire()
        now = time.monotonic()
        self._sent.append(now)
        _trim(self._sent, now)

    def observe(self, throttled: bool) -> None:
        """Record one API answer (True for a 429)."""
        now = time.monotonic()
        self._answers.append((now, throttled))
        _trim(self._answers, now)

    def throttled(self, retry_after: float | None) -> None:
        """React to a 429: cap the rate at what the API accepted, at most once a second."""
        now = time.monotonic()
        self.observe(True)
        if now - self._changed_at < CUT_EVERY_S and self.rate is not None:
            return
        answers = len(self._answers)
        refused = sum(1 for _, was_429 in self._answers if was_429)
        if answers and refused / answers > SATURATED:
            self._paused_until = max(self._paused_until, now + (retry_after or 1.0))
        if answers < MIN_SAMPLE:
            return  # too few answers to measure a rate; the request itself waits out Retry-After
        accepted_rate = (answers - refused) / _span(self._answers[0][0], now)
        sent_rate = len(self._sent) / _span(self._sent[0], now) if self._sent else 0.0
        cap = min(x for x in (self.rate, sent_rate or None, self._ceiling, accepted_rate or MIN_RATE)
                  if x is not None)
        self._set_rate(max(MIN_RATE, cap), now)
        self.throttle_events += 1

    def _recover(self) -> None:
        now = time.monotonic()
        elapsed = now - self._changed_at
        if self.rate is None or elapsed < 1.0:
            return
        new = self.rate * RECOVERY ** int(elapsed)
        sent_rate = len(self._sent) / _span(self._sent[0], now) if self._sent else 0.0
        # Once we allow far more than we send, the cap no longer matters: drop it.
        if (self._ceiling and new >= self._ceiling) or new > max(4 * sent_rate, 50.0):
            self.rate, self._adaptive, self._changed_at = None, None, now
            return
        self._set_rate(new, now)

    def _set_rate(self, rate: float, now: float) -> None:
        self.rate = rate
        self._changed_at = now
        self._adaptive = _limiter(rate)


def _trim(window: deque, now: float) -> None:
    while window and (window[0][0] if isinstance(window[0], tuple) else window[0]) < now - WINDOW_S:
        window.popleft()


def _span(first: float, now: float) -> float:
    """Seconds the window really covers (short at the start of a run), never under 0.25 s."""
    return max(0.25, min(WINDOW_S, now - first))


def _limiter(rate: float) -> "AsyncLimiter":
    """aiolimiter's leaky bucket of `rate` requests a second."""
    from aiolimiter import AsyncLimiter
    return AsyncLimiter(rate, 1.0)
