"""What every stage receives: the run's shared context and one item's job."""
from __future__ import annotations

import asyncio
from collections import Counter, deque
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
    budget: int | None = None      # credits this run may still reserve
    reserved: int = 0              # orders submitted this run that may still charge
    stop_reason: str | None = None # set once: no new submits after it
    in_stage: Counter = field(default_factory=Counter)
    uploads: dict[str, asyncio.Future] = field(default_factory=dict)
    critical: set[asyncio.Task] = field(default_factory=set)  # submits that must finish even on Ctrl-C
    credits: int = 0               # orders seen `active` this run
    submits: int = 0
    durations: deque = field(default_factory=lambda: deque(maxlen=200))  # submit -> active, seconds
    _first_poll: float = 0.0
    _first_poll_at: int = -1

    def first_poll_after(self, interval: float) -> float:
        """Seconds from submit to the first status check: at least `interval`, later once this run
        has seen orders finish (their 10th percentile), so checks are not spent on orders that
        cannot be ready yet and more of maxRetriesAllowed is left for slow ones."""
        if len(self.durations) < 10:
            return interval
        if self._first_poll_at != self.credits:  # recomputed as orders finish, not per item
            ordered = sorted(self.durations)
            self._first_poll = ordered[len(ordered) // 10]
            self._first_poll_at = self.credits
        return max(interval, self._first_poll)

    def stop_submits(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
