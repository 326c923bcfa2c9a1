"""What every stage receives: the run's shared context and one item's job."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.lightx.client import Client
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Item
from pipeline.lightx.tools import Tool
from pipeline.run.budget import Budget
from pipeline.run.progress import StageCounts
from pipeline.run.timing import OrderTimes

UPLOAD_MAX_AGE_S = 23 * 3600  # LightX keeps an imageUrl 24 h; keep an hour of margin


class Parked(Exception):
    """The item cannot go further in this run; it keeps its state and the next run continues."""


@dataclass(frozen=True)
class StepSpec:
    """One step of a variant's chain, resolved for one item (None on a job: the implicit variant)."""

    tool: Tool
    values: dict                   # field values as sent, image fields still local paths
    images: dict                   # image field -> (local path, sha256): uploaded before the submit
    final: bool                    # the variant's last step writes output.dir; others state_dir/steps


@dataclass(eq=False)
class Job:
    item: Item
    row: Row
    spec: StepSpec | None = None
    reuploaded: bool = False       # a rejected imageUrl is re-uploaded once per run
    reserved: bool = False         # its current order counts against this run's budget


@dataclass(eq=False)
class Context:
    """What every stage shares during one run. Its parts count for themselves: stages call their
    methods (`budget.reserve()`, `times.finished(...)`) and assign none of their fields."""

    cfg: RunConfig
    client: Client
    ckpt: Checkpoint
    api_id: str                    # which API instance uploads and orders belong to
    api_kind: str                  # whose order times these are: "sandbox" or "lightx"
    source_dir: Path               # content-addressed copies of fetched remote images
    order_slots: asyncio.Semaphore  # limits.concurrency: orders at the API at once
    budget: Budget = field(default_factory=Budget)
    counts: StageCounts = field(default_factory=StageCounts)
    times: OrderTimes = field(default_factory=OrderTimes)  # learnt order times: when to check
    uploads: dict[str, asyncio.Future] = field(default_factory=dict)  # uploads under way, by upload_key
    critical: set[asyncio.Task] = field(default_factory=set)  # submits that must finish even on Ctrl-C
    outputs: Any = None            # store.remote.Remote when output.dir is a storage URL, else None
    discloser: Any = None          # run.disclose.Discloser: the disclosure XMP of delivered pictures
    qa: Any = None                 # run.qa.Scorer: every delivered picture's fidelity, else None

    def upload_key(self, image_sha256: str | None) -> str:
        """Uploads are shared by identical bytes within one API instance."""
        return f"{self.api_id}|{image_sha256}"
