"""One request gate shared by the whole run: an optional fixed rate, and AIMD slowdown after 429s.

After a 429 every request waits out Retry-After, and the run's request rate is cut to half of
what it was sending; it then grows back by 10% a second while no 429 arrives (additive-increase /
multiplicative-decrease, the idea TCP congestion control made famous). Rate limiting itself is
aiolimiter's leaky bucket.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

from aiolimiter import AsyncLimiter

MIN_RATE = 1.0          # requests per second; never slower than this
RECOVERY = 1.10         # growth per second without a 429
WINDOW_S = 2.0          # how far back the sent rate is measured


class Pacer:
    """Shared gate: ``await pacer.acquire()`` before each request; ``throttled()`` on a 429."""

    def __init__(self, requests_per_second: float | None = None):
        self._fixed = AsyncLimiter(requests_per_second, 1.0) if requests_per_second else None
        self._ceiling = requests_per_second
        self._adaptive: AsyncLimiter | None = None
        self.rate: float | None = None       # current adaptive cap, None when not throttled
        self._changed_at = 0.0
        self._paused_until = 0.0
        self._sent: deque[float] = deque()
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
        while self._sent and self._sent[0] < now - WINDOW_S:
            self._sent.popleft()

    def throttled(self, retry_after: float | None) -> None:
        """Record a 429: pause everyone, then halve the rate (once per burst of 429s)."""
        now = time.monotonic()
        self._paused_until = max(self._paused_until, now + (retry_after if retry_after else 1.0))
        if self.rate is not None and now - self._changed_at < 1.0:
            return  # answers to requests sent before the last cut
        sent_rate = len(self._sent) / WINDOW_S
        known = [x for x in (self.rate, sent_rate, self._ceiling) if x]
        current = min(known) if known else 2 * MIN_RATE
        self._set_rate(max(MIN_RATE, current / 2), now)
        self.throttle_events += 1

    def _recover(self) -> None:
        now = time.monotonic()
        elapsed = now - self._changed_at
        if self.rate is None or elapsed < 1.0:
            return
        new = self.rate * RECOVERY ** int(elapsed)
        sent_rate = len(self._sent) / WINDOW_S
        # Once we allow far more than we send, the cap no longer matters: drop it.
        if (self._ceiling and new >= self._ceiling) or new > max(4 * sent_rate, 50.0):
            self.rate, self._adaptive, self._changed_at = None, None, now
            return
        self._set_rate(new, now)

    def _set_rate(self, rate: float, now: float) -> None:
        self.rate = rate
        self._changed_at = now
        self._adaptive = AsyncLimiter(rate, 1.0)
