"""What every stage receives: the run's shared context and one item's job."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from pipeline.checkpoint import Checkpoint, Row
from pipeline.client import Client
from pipeline.config import RunConfig
from pipeline.manifest import Item

UPLOAD_MAX_AGE_S = 23 * 3600  # LightX keeps an imageUrl 24 h; keep an hour of margin


class Parked(Exception):
    """The item cannot go further in this run; it keeps its state and the next run continues."""


@dataclass(eq=False)
class Job:
    item: Item
    row: Row
    polls: int = 0                 # status checks of the current order in this run
    reuploaded: bool = False       # a rejected imageUrl is re-uploaded once per run
    reserved: bool = False         # its current order counts against this run's budget


@dataclass(eq=False)
class Context:
    cfg: RunConfig
    client: Client
    ckpt: Checkpoint
    session: aiohttp.ClientSession
    api_id: str                    # which API instance uploads and orders belong to
    source_dir: Path               # content-addressed copies of fetched remote images
    order_slots: asyncio.Semaphore | None = None  # limits.concurrency: orders at the API at once
    budget: int | None = None      # credits this run may still reserve
    reserved: int = 0              # orders submitted this run that may still charge
    stop_reason: str | None = None # set once: no new submits after it
    in_stage: Counter = field(default_factory=Counter)
    uploads: dict[str, asyncio.Future] = field(default_factory=dict)
    critical: set[asyncio.Task] = field(default_factory=set)  # submits that must finish even on Ctrl-C
    credits: int = 0               # orders seen `active` this run
    submits: int = 0
    first_check_s: float | None = None  # learnt: seconds from submit by which half the orders are done

    def first_poll_after(self, interval: float) -> float:
        """Seconds from submit to an order's first status check: at least `interval`, else about
        the time by which half of this run's orders are done (first_check_s). Checks are then not
        spent on orders that cannot be ready yet, and maxRetriesAllowed reaches the slow ones."""
        return interval if self.first_check_s is None else max(interval, self.first_check_s)

    def expect(self, avg_s: float | None) -> None:
        """The API's own avgResponseTimeInSec (from a submit answer): where the estimate starts."""
        if self.first_check_s is None and avg_s:
            self.first_check_s = avg_s

    def first_check(self, done: bool, elapsed_s: float, in_flight: int, interval: float) -> None:
        """The first status check of an order of this run found it `done` (active or failed) or not,
        `elapsed_s` after its submit. Moves first_check_s toward the median order time by a
        Robbins-Monro step: down when done, up when not, so in balance half are done at their first
        check. Unlike "the time orders were seen done", this does not creep up a round trip per
        order. Up to `in_flight` orders answer to one estimate before a change shows, so each moves
        it 0.1 / in_flight (2% at most): a tenth per round of orders at most, which also bounds how
        far it swings around a fixed order time. 2% each swung it 100x within a round of 200 orders.
        It never goes below `interval`, where checks start anyway, so it can climb back quickly."""
        if self.first_check_s is None:  # no avgResponseTimeInSec: start from the first order seen done
            if done:
                self.first_check_s = max(interval, elapsed_s)
            return
        step = min(0.02, 0.1 / max(1, in_flight))
        self.first_check_s = max(interval, self.first_check_s * ((1 - step) if done else (1 + step)))

    def stop_submits(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
