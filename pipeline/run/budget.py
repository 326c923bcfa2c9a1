"""What a run may spend and what it has spent: the only place credits are counted during a run.

    budget = Budget(limit=100)
    if (reason := budget.reserve()):   # before each submit
        ...park the item: no new order
    budget.submitted(); budget.charged()   # the order was created; it completed (1 credit)
    budget.release()                   # the order was refused or failed: it charges nothing

An order holds its reservation from submit until it completes or fails, so orders in flight never
overshoot `budget.max_credits`. `stop(reason)` ends new submits for the rest of the run (key
rejected, credits exhausted, Ctrl-C); the first reason is the one reported.
"""
from __future__ import annotations


class Budget:
    __slots__ = ("_limit", "_reserved", "_credits", "_submits", "_stop_reason")

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._reserved = 0   # orders submitted this run that may still charge
        self._credits = 0    # orders seen `active` this run
        self._submits = 0
        self._stop_reason: str | None = None

    @property
    def credits(self) -> int:
        return self._credits

    @property
    def submits(self) -> int:
        return self._submits

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """No new submits after this; the first reason given is kept."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def reserve(self) -> str | None:
        """Reserve one credit for a new order; the reason there can be none, or None."""
        if self._stop_reason:
            return self._stop_reason
        if self._limit is not None and self._reserved >= self._limit:
            self.stop(f"budget of {self._limit} credits reached")
            return self._stop_reason
        self._reserved += 1
        return None

    def release(self) -> None:
        """An order reserved for will not charge: refused, or failed (failed orders are free)."""
        self._reserved -= 1

    def submitted(self) -> None:
        self._submits += 1

    def charged(self) -> None:
        self._credits += 1
