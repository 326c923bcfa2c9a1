"""The fidelity gate of a run: every delivered picture scored in a process pool beside the event loop.

    async with Scorer(cfg) as scorer:                 # workers start at the first output
        fields = await scorer.verdict(source, target)  # state done or review, and the score's fields

The score (media/fidelity.py) takes ~20 ms of CPU a picture: in a worker process it never holds
the event loop or its GIL. Below `qa.min_fidelity` an output is kept on disk in state `review`, with
a heat-map of its difference in `<output.dir>/review/`, until `pipeline review` decides.
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
from pipeline.run.states import State

log = logging.getLogger(__name__)
HEATMAPS = "review"  # under output.dir: the report's difference heat-maps of held outputs


def _warm() -> None:
    """In a worker: import the score's libraries (numpy, scikit-image, OpenCV) while the first orders run."""
    from pipeline.media import fidelity  # noqa: F401 - imported here: `pipeline run` itself never needs them


def _score(source: str, output: str | bytes, min_fidelity: float, heatmap: str | None) -> dict:
    """In a worker: media.fidelity.score_files."""
    from pipeline.media import fidelity
    return fidelity.score_files(source, output, min_fidelity, heatmap)


def _unmeasured(note: str) -> dict:
    return {"fidelity": None, "fidelity_ssim": None, "fidelity_delta_e": None, "fidelity_iou": None,
            "fidelity_note": note}


def heatmap_name(output_sha256: str) -> str:
    """Where the report finds a held output's heat-map, relative to output.dir."""
    return f"{HEATMAPS}/{output_sha256[:20]}.png"


class Scorer:
    """A pool of worker processes (spawned: the run's threads never fork) that score outputs."""

    def __init__(self, cfg: RunConfig, *, wanted: bool = True, workers: int | None = None):
        self.cfg = cfg
        self._wanted = wanted  # a run with nothing to download starts no process
        self._workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    async def __aenter__(self) -> "Scorer":
        return self

    def _started(self) -> ProcessPoolExecutor:
        """The pool, started at the first output: a run that downloads nothing (stopped early, all
        unchanged) starts no process, and none competes for the CPU while the first orders run."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
            for _ in range(self._workers):  # every worker imports the libraries, not only the first
                self._pool.submit(_warm)
        return self._pool

    async def __aexit__(self, *exc) -> None:
        """Every verdict has been awaited by now: the workers are idle, or still importing when the run
        was stopped early (Ctrl-C). Either way they are ended at once, not waited for."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        workers = list(getattr(pool, "_processes", {}).values())  # ours; the executor has no public list
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, lambda: [p.join(5) for p in workers])

    async def verdict(self, source: Path, output: Path | bytes, output_sha256: str) -> dict:
        """The row's fields for an output just delivered: its score, and state done or review."""
        qa = self.cfg.qa
        if not self._wanted:
            return {"state": State.DONE}
        heatmap = str(self.cfg.output.dir / heatmap_name(output_sha256)) if qa.min_fidelity > 0 else None
        target = output if isinstance(output, bytes) else str(output)
        try:
            fields = await asyncio.get_running_loop().run_in_executor(
                self._started(), _score, str(source), target, qa.min_fidelity, heatmap)
        except BrokenProcessPool as exc:  # a worker killed (out of memory): this output is not judged
            log.warning("fidelity of %s not measured: a worker process died (%s)", output_sha256[:12], exc)
            fields = _unmeasured(f"fidelity not measured: worker process died ({exc})")
        score = fields["fidelity"]
        held = qa.min_fidelity > 0 and score is not None and score < qa.min_fidelity
        return {**fields, "state": State.REVIEW if held else State.DONE, "review": None, "review_reason": None,
                "reviewed_at": None}
