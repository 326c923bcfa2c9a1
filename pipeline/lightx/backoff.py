"""How the LightX client waits between tries: full-jitter backoff, Retry-After, when to give up.

    delay = delay_for(attempt, exc, base, cap)     # seconds before try `attempt + 1`
"""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # tenacity itself is imported by the first retry, not by every run (#21 §5)
    from tenacity import RetryCallState

from pipeline.errors import ApiError, ItemError, TransientError


def unanswered_after(attempts: int) -> Callable[[RetryCallState], bool]:
    """tenacity stop: `attempts` tries made and the last got no HTTP answer (refused, reset, timed out)."""
    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return state.attempt_number >= attempts and isinstance(exc, ApiError) and exc.http_status is None \
            and exc.status_code is None
    return stop


def gave_up(exc: TransientError, attempts: int, started: float) -> ItemError:
    return ItemError(f"gave up after {attempts} attempts: {exc} (retried for {time.monotonic() - started:.0f} s)",
                     http_status=exc.http_status, status_code=exc.status_code)


def backoff(base: float, cap: float, done: int = 0) -> Callable[[RetryCallState], float]:
    """tenacity wait: `delay_for` its attempt number, counting `done` attempts made before it."""
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return delay_for(state.attempt_number + done, exc, base, cap)
    return wait


def delay_for(attempt: int, exc: BaseException | None, base: float, cap: float) -> float:
    """Full-jitter exponential backoff (the AWS architecture blog's "full jitter"), floored by Retry-After."""
    exp = min(cap, base * 2 ** (attempt - 1))
    delay = random.uniform(0, exp)
    if isinstance(exc, ApiError) and exc.retry_after:
        delay = max(delay, min(exc.retry_after, cap))
    return delay
