"""What every stage receives: the run's shared context and one item's job."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.lightx.client import Client
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Item
from pipeline.run.timing import OrderTimes

UPLOAD_MAX_AGE_S = 23 * 3600  # LightX keeps an imageUrl 24 h; keep an hour of margin


class Parked(Exception):
    """The item cannot go further in this run; it keeps its state and the next run continues."""


@dataclass(eq=False)
class Job:
    item: Item
    row: Row
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
    times: OrderTimes = field(default_factory=OrderTimes)  # learnt order times: when to check
    api_kind: str = "lightx"       # whose order times these are: "sandbox" or "lightx"
    not_started: int = 0           # items no worker has taken up yet

    def upload_key(self, image_sha256: str | None) -> str:
        """Uploads are shared by identical bytes within one API instance."""
        return f"{self.api_id}|{image_sha256}"

    def stop_submits(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
