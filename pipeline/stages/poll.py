"""submitted -> generated: check the order every poll.interval_s, at most max_attempts times a run.

An order still `init` after its last allowed check keeps its orderId and is collected by the next
run; it is never resubmitted while it may still complete and charge. A `failed` order is free and
is resubmitted up to retries.failed_orders times.
"""
from __future__ import annotations

import asyncio
import time

from pipeline.errors import ItemError
from pipeline.stages.context import Context, Job, Parked

DEFAULT_MAX_POLLS = 5  # LightX's documented maxRetriesAllowed


async def run(ctx: Context, job: Job) -> None:
    row = job.row
    interval = ctx.cfg.poll.interval_s
    limit = ctx.cfg.poll.max_attempts or row.max_polls or DEFAULT_MAX_POLLS
    while job.polls < limit:
        if job.polls:
            await asyncio.sleep(interval)
        else:  # an order left by an earlier run has had its time and is checked at once
            first = ctx.first_poll_after(interval) - (time.time() - (row.submitted_at or 0))
            if first > 0:
                await asyncio.sleep(first)
        try:
            status = await ctx.client.order_status(row.order_id)
        except ItemError as exc:
            # The order may still complete and charge: keep it, never resubmit blindly.
            raise Parked(f"status check failed, order {row.order_id} kept for the next run: {exc}") from None
        job.polls += 1
        if job.reserved and (job.polls == 1 or ctx.first_check_s is None):
            # Ordered in this run: whether it is done by its first check tells when to check the others.
            ctx.first_check(status.status != "init", time.time() - row.submitted_at, ctx.cfg.limits.concurrency,
                            interval)
        if status.status == "active":
            ctx.credits += 1
            ctx.ckpt.save(row, state="generated", output_url=status.output, credits=row.credits + 1,
                          error=None)
            return
        if status.status == "failed":
            if job.reserved:  # a failed order is free: give its budget back
                ctx.reserved -= 1
                job.reserved = False
            _order_failed(ctx, job)
            return
    raise Parked(f"order {row.order_id} still processing after {job.polls} status checks; "
                 "the next run collects it")


def _order_failed(ctx: Context, job: Job) -> None:
    row = job.row
    failed = row.failed_orders + 1
    if failed <= ctx.cfg.retries.failed_orders:
        ctx.ckpt.save(row, state="uploaded", order_id=None, failed_orders=failed,
                      error=f"order {row.order_id} failed (free); resubmitting")
    else:
        ctx.ckpt.save(row, state="failed", failed_orders=failed, finished_at=time.time(),
                      error=f"order failed {failed} times (no credit charged)")
