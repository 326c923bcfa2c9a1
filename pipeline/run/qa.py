"""The fidelity gate of a run: every delivered picture scored in worker processes beside the event loop.

    async with Scorer(cfg) as scorer:                 # the first worker starts at the first output
        fields = await scorer.verdict(source, target)  # state done or review, and the score's fields

The score (media/fidelity.py) takes 2-15 ms of CPU a picture: in a worker process it never holds
the event loop or its GIL. A worker imports only what the score needs (run/qa_worker.py), ~0.5 s of
CPU, so one starts at the first output and a second only when the outputs waiting for it would keep
it busy for longer than that start costs. Below `qa.min_fidelity` an output is kept on disk in state
`review`, with a heat-map of its difference in `<output.dir>/review/`, until `pipeline review` decides.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.run import qa_worker
from pipeline.run.states import State

log = logging.getLogger(__name__)
HEATMAPS = "review"  # under output.dir: the report's difference heat-maps of held outputs
# A second worker starts once the outputs waiting for the first would take it this many CPU seconds:
# about what a worker's start-up costs, so it is never spent on a backlog that drains by itself.
SECOND_WORKER_BACKLOG_S = 0.5


def _unmeasured(note: str) -> dict:
    return {"fidelity": None, "fidelity_ssim": None, "fidelity_delta_e": None, "fidelity_iou": None,
            "fidelity_note": note}


def heatmap_name(output_sha256: str) -> str:
    """Where the report finds a held output's heat-map, relative to output.dir."""
    return f"{HEATMAPS}/{output_sha256[:20]}.png"


class Scorer:
    """Worker processes (spawned: the run's threads never fork), one pool of one each, that score outputs."""

    def __init__(self, cfg: RunConfig, *, wanted: bool = True, workers: int | None = None):
        self.cfg = cfg
        self._wanted = wanted  # a run with nothing to download starts no process
        self._most = workers or max(1, min(2, os.cpu_count() or 1))
        self._pools: list[ProcessPoolExecutor] = []
        self._waiting: dict[ProcessPoolExecutor, int] = {}  # outputs sent to each, not answered yet
        self._cost_s: float | None = None  # CPU of one score, a moving average of the workers' reports

    async def __aenter__(self) -> "Scorer":
        return self

    @property
    def workers(self) -> int:
        """Worker processes started so far."""
        return len(self._pools)

    def _pool(self) -> ProcessPoolExecutor:
        """The least busy worker; the first started at the first output (a run that downloads nothing
        starts none), a second once the backlog is worth its start-up."""
        backlog = sum(self._waiting.values())
        if not self._pools or (len(self._pools) < self._most and self._cost_s is not None
                               and backlog * self._cost_s > SECOND_WORKER_BACKLOG_S):
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=qa_worker.start)
            self._pools.append(pool)
            self._waiting[pool] = 0
        return min(self._pools, key=self._waiting.__getitem__)

    async def __aexit__(self, *exc) -> None:
        """Every verdict has been awaited by now: the workers are idle, or still importing when the run
        was stopped early (Ctrl-C). Either way they are ended at once, not waited for."""
        pools, self._pools = self._pools, []
        workers = [p for pool in pools for p in getattr(pool, "_processes", {}).values()]  # no public list
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        if workers:
            await asyncio.get_running_loop().run_in_executor(None, lambda: [p.join(5) for p in workers])

    async def verdict(self, source: Path, output: Path | bytes, output_sha256: str) -> dict:
        """The row's fields for an output just delivered: its score, and state done or review."""
        qa = self.cfg.qa
        if not self._wanted:
            return {"state": State.DONE}
        heatmap = str(self.cfg.output.dir / heatmap_name(output_sha256)) if qa.min_fidelity > 0 else None
        target = output if isinstance(output, bytes) else str(output)
        pool = self._pool()
        self._waiting[pool] += 1
        try:
            fields, cost_s = await asyncio.get_running_loop().run_in_executor(
                pool, qa_worker.score, str(source), target, qa.min_fidelity, heatmap)
            self._cost_s = cost_s if self._cost_s is None else 0.8 * self._cost_s + 0.2 * cost_s
        except BrokenProcessPool as exc:  # a worker killed (out of memory): this output is not judged
            log.warning("fidelity of %s not measured: a worker process died (%s)", output_sha256[:12], exc)
            fields = _unmeasured(f"fidelity not measured: worker process died ({exc})")
            if pool in self._pools:  # the next output starts a new one
                self._pools.remove(pool)
                pool.shutdown(wait=False, cancel_futures=True)
        finally:
            if pool in self._waiting:
                self._waiting[pool] -= 1
        score = fields["fidelity"]
        held = qa.min_fidelity > 0 and score is not None and score < qa.min_fidelity
        return {**fields, "state": State.REVIEW if held else State.DONE, "review": None, "review_reason": None,
                "reviewed_at": None}
