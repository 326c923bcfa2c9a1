"""The drive loop: every job through its stages, limits.concurrency orders and limits.transfers more
items at once, and the per-item boundary where failures become data on the row.

    interrupted = await drive_all(ctx, the_plan.units, rows)

Ctrl-C or SIGTERM stops new work and drops requests not yet sent; submits already on the wire
finish and their orderIds are written before it returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time

from pipeline.errors import (ApiUnreachable, AuthError, CheckpointError, FatalApiError, FetchError, ItemError,
                             OutputError, PipelineError, Stopped, WrongApi)
from pipeline.media.images import ImageError
from pipeline.plan.steps import Unit
from pipeline.run.progress import Progress
from pipeline.run.stages import ORDER_STAGES, STAGES, Context, Job, Parked
from pipeline.run.states import State
from pipeline.store.checkpoint import Row

ITEM_FAILURES = (ItemError, FetchError, ImageError)
# Only these end the run; any other FatalApiError (no credits left) ends new submits only.
RUN_ENDING = (AuthError, ApiUnreachable, WrongApi)
log = logging.getLogger(__name__)


async def drive_all(ctx: Context, units: list[Unit], rows: dict[str, Row], *, progress: bool | None = None,
                    quiet: bool = False) -> bool:
    """Run the plan's `units`, limits.concurrency orders and limits.transfers more items at once;
    True if interrupted."""
    queue = iter(units)
    ctx.counts.queued(len(units))
    fatal: list[PipelineError] = []
    shown = Progress(total=len(units), counts=ctx.counts, enabled=progress, quiet=quiet)

    async def worker() -> None:
        for unit in queue:
            ctx.counts.taken()
            if fatal:
                return
            await _drive_unit(ctx, unit, rows, fatal)
            shown.finished(unit.row.state)
            if fatal:  # nothing more can be written or sent: stop the others (submits finish, shielded)
                for other in workers:
                    if other is not asyncio.current_task():
                        other.cancel()
                return

    workers = [asyncio.ensure_future(worker()) for _ in range(min(ctx.cfg.limits.workers, len(units)) or 1)]
    with _stop_on_signal(ctx, workers) as stopped:
        try:
            shown.start()
            await asyncio.gather(*workers, return_exceptions=True)
            # Orders already sent must have their ids written down before we leave.
            while ctx.critical:
                await asyncio.gather(*list(ctx.critical), return_exceptions=True)
        finally:
            shown.close()
    if fatal:
        raise fatal[0]
    return stopped.is_set()


@contextlib.contextmanager
def _stop_on_signal(ctx: Context, workers: list[asyncio.Future]):
    """On Ctrl-C or SIGTERM: no new work, drop requests not yet sent, let sent submits finish.

    A second signal aborts at once (the default handler is back). Yields an Event set on a signal."""
    loop = asyncio.get_running_loop()
    stopped = threading.Event()

    def remove_handlers() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    def on_signal() -> None:
        stopped.set()
        ctx.budget.stop("interrupted")
        ctx.client.stop()
        for task in ctx.critical:  # a submit waiting (backoff, Retry-After, the first-call gate) sent nothing
            if not ctx.client.sending(task):
                task.cancel()
        remove_handlers()
        for w in workers:
            w.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
    try:
        yield stopped
    finally:
        remove_handlers()


class _OrderSlot:
    """One item's hold on one of limits.concurrency order slots, kept only through submit and poll."""

    def __init__(self, ctx: Context) -> None:
        self._ctx, self.held = ctx, False

    async def need(self, wanted: bool) -> None:
        if wanted == self.held:
            return
        if self.held:
            self.release()
            return
        with self._ctx.counts.inside("ready"):  # uploaded, waiting for an order slot
            await self._ctx.order_slots.acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self._ctx.order_slots.release()
            self.held = False


async def _drive_unit(ctx: Context, unit: Unit, rows: dict[str, Row], fatal: list[PipelineError]) -> None:
    """One unit through its steps, one after another, as far as they go; each next step is the plan's
    (`Unit.advance`), its row written before it is driven."""
    while True:
        await _drive(ctx, unit.job, fatal)
        moved, write = unit.advance(rows)
        if not moved:
            return
        if write is not None:
            ctx.ckpt.insert([write])
            rows[write.id] = write


# An order that may still charge, or has: its row keeps the order, whatever fails, since a failed row
# is ordered afresh by the next run (plan/decide: retry) and would be paid for twice.
ORDERED = frozenset({State.SUBMITTED, State.GENERATED})


def _failed(ctx: Context, row: Row, reason: str) -> None:
    """The item cannot go on in this run: failed, or, once ordered, kept for the next run to poll or
    download for no new credit (as a Parked one is)."""
    if row.state in ORDERED:
        ctx.ckpt.save(row, error=f"{reason}; order {row.order_id} kept for the next run (no new order)")
    else:
        ctx.ckpt.save(row, state=State.FAILED, error=reason, finished_at=time.time())


async def _drive(ctx: Context, job: Job, fatal: list[PipelineError]) -> None:
    """Take one item as far as it can go; the per-item boundary where failures become data."""
    row = job.row
    slot = _OrderSlot(ctx)
    try:
        while row.state in STAGES:
            name, stage = STAGES[row.state]
            await slot.need(name in ORDER_STAGES)
            with ctx.counts.inside(name):
                await stage(ctx, job)
    except (Parked, Stopped) as exc:
        ctx.ckpt.save(row, error=str(exc))
    except ITEM_FAILURES as exc:
        _failed(ctx, row, str(exc))
    except (FatalApiError, CheckpointError, OutputError) as exc:
        ctx.budget.stop(str(exc))
        if isinstance(exc, RUN_ENDING + (CheckpointError, OutputError)):
            fatal.append(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the per-item boundary: a bug stops one item, not the run
        log.exception("internal error on item %s", row.id)  # the traceback goes to the run log
        _failed(ctx, row, ctx.client.redact(f"internal error: {type(exc).__name__}: {exc}"))
    finally:
        slot.release()
