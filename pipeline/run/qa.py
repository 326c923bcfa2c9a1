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
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.run import qa_worker
from pipeline.run.children import ctrl_c_ignored
from pipeline.run.states import State

log = logging.getLogger(__name__)
HEATMAPS = "review"  # under output.dir: the report's difference heat-maps of held outputs
# A second worker starts once the outputs waiting for the first would take it this many CPU seconds:
# four times what a worker's start-up costs, so it is never spent on a backlog that soon drains itself.
SECOND_WORKER_BACKLOG_S = 2.0
BATCH = 32  # outputs in one message to a worker at most
# Workers that die this many times in a row are not started again this run: the rest of its outputs
# are delivered unscored, with one warning, instead of a new worker (and its 0.7 s of start-up) per batch.
MAX_DEATHS = 2
# A batch not answered this long after it was sent (its worker's start-up included) has a stuck worker:
# a source on a hung network mount, say. The worker is killed and the batch delivered unscored, so no
# score can hold a run for ever. A healthy batch of 32 takes a few seconds.
STUCK_S = 300.0
GAVE_UP = ("fidelity not measured: the score's worker processes died {n} times in a row ({why}); out of "
           "memory, or a script that calls pipeline.run without an `if __name__ == \"__main__\":` guard "
           "(docs/library.md)")


def _unmeasured(note: str) -> dict:
    return {"fidelity": None, "fidelity_ssim": None, "fidelity_delta_e": None, "fidelity_iou": None,
            "fidelity_note": note}


def _processes(pool: ProcessPoolExecutor) -> list:
    """The pool's worker processes (the pool keeps no public list)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def heatmap_name(output_sha256: str) -> str:
    """Where the report finds a held output's heat-map, relative to output.dir."""
    return f"{HEATMAPS}/{output_sha256[:20]}.png"


class Scorer:
    """Worker processes (spawned: the run's threads never fork), one pool of one each, that score outputs.

    Outputs that arrive while every worker is busy wait here and go to the next free one together, in
    one message: the pool's per-message cost on the run's own CPU is paid per batch, not per picture."""

    def __init__(self, cfg: RunConfig, *, wanted: bool = True, workers: int | None = None):
        self.cfg = cfg
        self._wanted = wanted  # a run with nothing to download starts no process
        self._most = workers or max(1, min(2, os.cpu_count() or 1))
        self._pools: list[ProcessPoolExecutor] = []
        self._sent: dict[ProcessPoolExecutor, int] = {}  # batches sent to each, not answered yet
        self._waiting: list[tuple[tuple, asyncio.Future]] = []  # not sent yet: (job, its verdict)
        self._scored = 0  # outputs sent and not answered yet
        self._cost_s: float | None = None  # CPU of one score, a moving average of the workers' reports
        self._deaths = 0  # workers that died since the last answer
        self._gave_up: str | None = None  # the note of every output once MAX_DEATHS workers died in a row
        self._initializer = qa_worker.start
        self._closing = False  # __aexit__ is ending the workers: a pool broken now is not a death
        self._unstarted: set[ProcessPoolExecutor] = set()  # pools whose worker the next submit starts
        self._stuck_pools: dict[ProcessPoolExecutor, float] = {}  # pools whose worker _stuck killed: after s

    async def __aenter__(self) -> "Scorer":
        return self

    @property
    def workers(self) -> int:
        """Worker processes started so far."""
        return len(self._pools)

    def _free_pool(self) -> ProcessPoolExecutor | None:
        """A worker that can take a batch now (one running, one queued, so it never waits for us); the
        first started at the first output (a run that downloads nothing starts none), a second once
        the outputs waiting would keep the first busy for longer than a start-up costs."""
        backlog = len(self._waiting) + self._scored
        if not self._pools or (len(self._pools) < self._most and self._cost_s is not None
                               and backlog * self._cost_s > SECOND_WORKER_BACKLOG_S):
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=self._initializer, initargs=(os.getpid(),))
            self._pools.append(pool)
            self._unstarted.add(pool)
            self._sent[pool] = 0
        pool = min(self._pools, key=self._sent.__getitem__)
        return pool if self._sent[pool] < 2 else None

    def _send(self) -> None:
        """Send what waits to the free workers, BATCH at most a message."""
        if self._gave_up is not None:
            waiting, self._waiting = self._waiting, []
            for _, verdict in waiting:
                if not verdict.done():
                    verdict.set_result(_unmeasured(self._gave_up))
            return
        while self._waiting and (pool := self._free_pool()) is not None:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            batch = [(job, verdict) for job, verdict in batch if not verdict.done()]  # not those cancelled
            if not batch:
                continue
            self._sent[pool] += 1
            self._scored += len(batch)
            starting = ctrl_c_ignored() if pool in self._unstarted else contextlib.nullcontext()
            try:
                with starting:  # a pool's first submit starts its worker: ignoring Ctrl-C from its first instruction
                    future = pool.submit(qa_worker.score_all, [job for job, _ in batch], self.cfg.qa.min_fidelity)
            except Exception as exc:  # noqa: BLE001 - no worker could be started or sent to
                # Out of memory or processes (a pod's pids limit), or a job that does not pickle: the batch
                # is answered now, as by a worker that died, so its items go on instead of waiting forever,
                # and MAX_DEATHS counts it. _answered sends what waits next, or gives up.
                failed: concurrent.futures.Future = concurrent.futures.Future()
                failed.set_exception(BrokenProcessPool(f"no worker could be started or sent to: "
                                                       f"{type(exc).__name__}: {exc}"))
                self._unstarted.discard(pool)
                self._answered(pool, batch, failed)
                return
            self._unstarted.discard(pool)
            answer = asyncio.wrap_future(future)
            timer = asyncio.get_running_loop().call_later(STUCK_S, self._stuck, pool, answer, STUCK_S)
            answer.add_done_callback(lambda done, p=pool, b=batch, t=timer: (t.cancel(), self._answered(p, b, done)))

    def _stuck(self, pool: ProcessPoolExecutor, answer: asyncio.Future, after_s: float) -> None:
        """A batch unanswered after STUCK_S: its worker is killed and the batch answered now, as by a
        worker that died (one that cannot be killed, in a hung read, is left to the OS)."""
        if answer.done():
            return
        self._stuck_pools[pool] = after_s
        for process in _processes(pool):
            process.kill()
        answer.cancel()  # _answered: a death, since the pool is in _stuck_pools

    def _answered(self, pool: ProcessPoolExecutor, batch: list, done: asyncio.Future) -> None:
        self._sent[pool] -= 1
        self._scored -= len(batch)
        try:
            answers = done.result()
        except BrokenProcessPool as exc:  # a worker killed (out of memory): these outputs are not judged
            answers = self._died(pool, batch, exc)
        except asyncio.CancelledError:
            if pool in self._stuck_pools:
                answers = self._died(pool, batch, BrokenProcessPool(
                    f"it had not answered {self._stuck_pools[pool]:g} s after a batch was sent, and was killed"))
            else:  # the run is ending: nobody waits for these any more
                answers = [(_unmeasured("fidelity not measured: the run was stopped"), None)] * len(batch)
        else:
            self._deaths = 0
        for (_, verdict), answer in zip(batch, answers):
            if verdict.done():  # its item was cancelled (Ctrl-C) meanwhile
                continue
            if isinstance(answer, RuntimeError):  # a bug scoring this one: its picture is paid for, so it is
                # delivered unscored with the bug's words on its row, never failed (a failed item is bought again)
                log.warning("fidelity of an output not measured: %s; delivered unscored", answer)
                verdict.set_result(_unmeasured(f"fidelity not measured: {answer}"))
                continue
            fields, cost_s = answer
            if cost_s is not None:
                self._cost_s = cost_s if self._cost_s is None else 0.9 * self._cost_s + 0.1 * cost_s
            verdict.set_result(fields)
        self._send()

    def _died(self, pool: ProcessPoolExecutor, batch: list, exc: BaseException) -> list:
        """The answers of a batch whose worker died; a death counted once per worker (its other batch
        dies with it), and no worker started again after MAX_DEATHS in a row."""
        first = pool in self._pools  # the first batch to report this worker's death
        self._deaths += first and not self._closing  # __aexit__ ending the workers (Ctrl-C) is no death
        answers = [(_unmeasured("fidelity not measured: the run was stopped" if self._closing else
                                f"fidelity not measured: worker process died ({exc})"), None)] * len(batch)
        if self._gave_up is not None or self._closing:
            pass  # said once already, or nothing to say
        elif self._deaths >= MAX_DEATHS:
            self._gave_up = GAVE_UP.format(n=self._deaths, why=exc)
            log.warning("%s; the rest of this run's outputs are delivered unscored", self._gave_up)
        else:
            log.warning("fidelity of %d %soutput(s) not measured: a worker process died (%s)", len(batch),
                        "" if first else "more ", exc)
        if first:  # the next batch starts a new one
            self._pools.remove(pool)
            pool.shutdown(wait=False, cancel_futures=True)
        return answers

    async def __aexit__(self, *exc) -> None:
        """Every verdict has been awaited by now: the workers are idle, or still importing when the run
        was stopped early (Ctrl-C). Either way they are ended at once, not waited for."""
        self._closing = True
        pools, self._pools, self._waiting = self._pools, [], []
        workers = [p for pool in pools for p in _processes(pool)]
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
        verdict = asyncio.get_running_loop().create_future()
        self._waiting.append(((str(source), target, heatmap), verdict))
        self._send()
        fields = await verdict
        score = fields["fidelity"]
        held = qa.min_fidelity > 0 and score is not None and score < qa.min_fidelity
        return {**fields, "state": State.REVIEW if held else State.DONE, "review": None, "review_reason": None,
                "reviewed_at": None}
