"""The ledger: what the sandbox charged and saw, for tests to assert on.

Credits are computed from each order's completion time, so an order that finishes
`active` is charged whether or not anyone polls it, and reading ``credits`` is always current.
Each order records its tool, the sha256 of the input bytes it was given (``sha256``), those of its
other pictures (``images``) and of the output it made (``output_sha256``), so that a test can follow
a chain: an upscale's ``sha256`` is the ``output_sha256`` of the order whose output it was given.
Status checks are counted twice: ``OrderRecord.polls`` over the order's life (its allowance, hence
``overpolls``), and ``Ledger.polls`` since the last reset, so that two snapshots can be diffed.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

BACKGROUND_GENERATOR = "background-generator"


@dataclass
class OrderRecord:
    """One accepted submit; ``outcome`` is what it becomes at ``done_at``."""

    order_id: str
    sha256: str
    prompt: str
    created: float
    done_at: float
    outcome: str  # "active" or "failed"
    polls: int = 0
    tool: str = BACKGROUND_GENERATOR
    fields: dict[str, Any] = field(default_factory=dict)  # the body's other values, as LightX names them
    images: dict[str, str] = field(default_factory=dict)  # body field -> sha256 of an uploaded picture
    output_sha256: str | None = None                      # set once the output is made

    @property
    def key(self) -> str:
        """What makes two orders the same purchase: tool, input bytes and every value."""
        if self.tool == BACKGROUND_GENERATOR:
            return submit_key(self.sha256, self.prompt)
        return f"{self.tool}|{self.sha256}|{json.dumps({**self.fields, **self.images}, sort_keys=True)}"

    def status(self, now: float) -> str:
        return "init" if now < self.done_at else self.outcome

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"tool": self.tool, "sha256": self.sha256, "prompt": self.prompt, "fields": dict(self.fields),
                "images": dict(self.images), "output_sha256": self.output_sha256, "status": self.status(now),
                "created": self.created, "done_at": self.done_at, "polls": self.polls}


def submit_key(sha256: str, prompt: str) -> str:
    return f"{sha256}|{prompt}"


@dataclass
class Ledger:
    """Accounting of one sandbox. Mutated only on the sandbox's event loop."""

    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    orders: dict[str, OrderRecord] = field(default_factory=dict)
    submits: Counter = field(default_factory=Counter)
    overpolls: int = 0
    polls: Counter = field(default_factory=Counter)  # status checks per orderId since the last reset
    rejected_uploads: list[str] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    keys_seen_on_non_api: int = 0
    uploads_completed: int = 0
    outage_started: float | None = None  # time.monotonic() when the --outage-s incident began

    @property
    def credits(self) -> int:
        """Orders that have completed ``active`` so far: one credit each."""
        now = self.clock()
        return sum(1 for o in self.orders.values() if o.status(now) == "active")

    @property
    def pending(self) -> int:
        now = self.clock()
        return sum(1 for o in self.orders.values() if o.status(now) == "init")

    def committed(self) -> int:
        """Credits charged plus those that pending orders will charge."""
        now = self.clock()
        return sum(1 for o in self.orders.values()
                   if o.outcome == "active" or o.status(now) == "init")

    def record_order(self, order: OrderRecord) -> None:
        self.orders[order.order_id] = order
        self.submits[order.key] += 1

    def record_poll(self, order: OrderRecord, max_retries_allowed: int) -> None:
        order.polls += 1
        self.polls[order.order_id] += 1
        if order.polls > max_retries_allowed:
            self.overpolls += 1

    def submits_for(self, sha256: str, prompt: str) -> int:
        return self.submits[submit_key(sha256, prompt)]

    def max_submits_per_key(self) -> int:
        return max(self.submits.values(), default=0)

    def polls_per_order(self) -> dict[str, int]:
        """Status checks per order since the last reset, 0 for this ledger's orders never checked."""
        return {**{oid: 0 for oid in self.orders}, **self.polls}

    def max_polls_per_order(self) -> int:
        return max(self.polls.values(), default=0)

    def reset(self) -> None:
        """Forget everything, in place (orders still in flight are no longer charged here)."""
        self.orders.clear()
        self.submits.clear()
        self.overpolls = 0
        self.polls.clear()
        self.rejected_uploads.clear()
        self.requests.clear()
        self.faults.clear()
        self.keys_seen_on_non_api = 0
        self.uploads_completed = 0
        self.outage_started = None

    def to_dict(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "credits": self.credits,
            "pending": self.pending,
            "orders": {oid: o.to_dict(now) for oid, o in self.orders.items()},
            "submits": dict(self.submits),
            "max_submits_per_key": self.max_submits_per_key(),
            "overpolls": self.overpolls,
            "polls_per_order": self.polls_per_order(),
            "max_polls_per_order": self.max_polls_per_order(),
            "rejected_uploads": list(self.rejected_uploads),
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "keys_seen_on_non_api": self.keys_seen_on_non_api,
            "uploads_completed": self.uploads_completed,
        }
