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
        """Seconds from submit to an order's first status check: at least `interval`, and once this
        run has seen orders finish, about the time by which half of them are done. Checks are not
        spent on orders that cannot be ready yet, and more of maxRetriesAllowed is left for slow ones."""
        return interval if self.first_check_s is None else max(interval, self.first_check_s)

    def order_finished(self, at_first_check: bool, by_s: float, interval: float, in_flight: int) -> None:
        """An order of this run was found finished `by_s` seconds after its submit, by its first
        status check or a later one. Moves first_check_s toward the median order time: a
        Robbins-Monro quantile estimate (first checks should find half the orders done). It keeps no
        list of past times and, unlike "when orders were seen done", does not creep up by a round
        trip per order. Up to `in_flight` orders answer to the same estimate before any change shows,
        so each moves it by 20% / in_flight (3% at most): a fifth at most per round of orders, stable
        where 2% each swung it 100x within one round of 200 orders."""
        if self.first_check_s is None:
            self.first_check_s = max(interval, by_s)
            return
        step = min(0.03, 0.2 / max(1, in_flight))
        self.first_check_s = max(interval, self.first_check_s * (1 - step if at_first_check else 1 + step))

    def stop_submits(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
