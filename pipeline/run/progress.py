"""Progress on stderr: a tqdm bar on a TTY, plain timestamped lines otherwise, nothing with --quiet."""
from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a bar is shown: a quiet run or a plain log does without it
    from tqdm import tqdm

log = logging.getLogger("pipeline")
TICK_S = 0.5
PLAIN_EVERY_S = 30.0


class StageCounts:
    """How many items are in each stage now, and how many no worker has taken up yet.

    "ready" counts items uploaded and waiting for an order slot."""

    __slots__ = ("_now", "_not_started")

    def __init__(self) -> None:
        self._now: Counter = Counter()
        self._not_started = 0

    def __getitem__(self, stage: str) -> int:
        return self._now[stage]

    @property
    def not_started(self) -> int:
        return self._not_started

    def queued(self, count: int) -> None:
        self._not_started = count

    def taken(self) -> None:
        """A worker took up the next item."""
        self._not_started -= 1

    def inside(self, stage: str) -> "_Inside":
        """`with counts.inside("poll"):` counts an item in `stage` while the block runs."""
        return _Inside(self._now, stage)


class _Inside:
    """The context of StageCounts.inside; a class, not a generator: items enter five stages each."""

    __slots__ = ("_now", "_stage")

    def __init__(self, now: Counter, stage: str) -> None:
        self._now, self._stage = now, stage

    def __enter__(self) -> None:
        self._now[self._stage] += 1

    def __exit__(self, *exc) -> None:
        self._now[self._stage] -= 1


class Progress:
    """Counts per stage while items run; started and closed by the engine."""

    def __init__(self, total: int, counts: StageCounts, enabled: bool | None = None, quiet: bool = False):
        self.total = total
        self._counts = counts
        self._ended: Counter = Counter()
        tty = sys.stderr.isatty()
        self._bar_on = (tty if enabled is None else enabled) and not quiet and total > 0
        self._plain_on = not self._bar_on and not quiet and total > 0
        self._bar: tqdm | None = None
        self._ticker: asyncio.Task | None = None

    def start(self) -> None:
        if self._bar_on:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, unit="item", file=sys.stderr, dynamic_ncols=True,
                             smoothing=0.1)
        if self._bar_on or self._plain_on:
            self._ticker = asyncio.ensure_future(self._tick())

    def finished(self, state: str) -> None:
        self._ended[state] += 1
        if self._bar:
            self._refresh()  # the counts beside the bar change with it, not a tick later
            self._bar.update(1)

    def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        if self._bar:
            self._refresh()
            self._bar.close()

    def line(self) -> str:
        stages = self._counts
        done, failed = self._ended["done"], self._ended["failed"]
        parked = sum(self._ended.values()) - done - failed  # ended this run unfinished: a later run goes on
        return (f"{done + failed + parked}/{self.total} · done {done} · failed {failed} · "
                f"left for a later run {parked} · not started {stages.not_started} · "
                f"uploading {stages['upload']} · ready {stages['ready']} · submitting {stages['submit']} "
                f"· polling {stages['poll']} · downloading {stages['download']}")

    async def _tick(self) -> None:
        elapsed = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            elapsed += TICK_S
            if self._bar:
                self._refresh(redraw=True)  # nothing else redraws the bar while no item finishes
            elif elapsed >= PLAIN_EVERY_S:
                elapsed = 0.0
                log.info("progress %s", self.line())

    def _refresh(self, redraw: bool = False) -> None:
        s = self._counts
        self._bar.set_postfix_str(f"up {s['upload']} ready {s['ready']} sub {s['submit']} poll {s['poll']} "
                                  f"dl {s['download']} ok {self._ended['done']} "
                                  f"fail {self._ended['failed']}", refresh=redraw)
