"""submitted -> generated: check the order when the learnt order times say it is likely done.

An order has an allowance of status checks (the API's maxRetriesAllowed, or poll.max_attempts),
counted in the checkpoint over all runs. `timing.OrderTimes` spreads them over the time the order
is likely to take; `poll.interval_s` is the least gap between two checks of one order. An order
still `init` after its allowance keeps its orderId and is never resubmitted while it may still
complete and charge: each later run checks it once more, no sooner than almost every order is
done (the 99th percentile) after its last check. A `failed` order is free and is resubmitted up to
retries.failed_orders times.
"""
from __future__ import annotations

import time

from pipeline.errors import ItemError
from pipeline.run.stages.context import Context, Job, Parked
from pipeline.run.states import State

DEFAULT_MAX_POLLS = 5  # LightX's documented maxRetriesAllowed


async def run(ctx: Context, job: Job) -> None:
    row, times, clock = job.row, ctx.times, ctx.times.clock
    gap = ctx.cfg.poll.interval_s
    allowance = ctx.cfg.poll.max_attempts or row.max_polls or DEFAULT_MAX_POLLS
    explore = times.explore(ctx.counts.not_started) if row.polls == 0 and allowance >= 3 else None
    submitted_at = row.submitted_at or clock.now()
    while True:
        while await times.wait(times.next_check(submitted_at, row.seen_init_s or 0.0, row.checked_at,
                                                allowance - row.polls, gap, explore) - clock.now()):
            pass  # the estimate changed while waiting: plan this check again
        try:
            status = await (ctx.client.order_status(row.order_id) if job.spec is None else
                            ctx.client.order_status(row.order_id, job.spec.tool.status_path))
        except ItemError as exc:
            # The order may still complete and charge: keep it, never resubmit blindly.
            times.forget(row.order_id)
            raise Parked(f"status check failed, order {row.order_id} kept for the next run: {exc}") from None
        now = clock.now()
        elapsed = now - submitted_at
        if status.status == "init":
            times.alive(row.order_id, elapsed)
            ctx.ckpt.save(row, polls=row.polls + 1, checked_at=now, seen_init_s=elapsed)
            # An explorer goes on exploring while two checks would be left for the plan.
            explore = times.explore_again() if explore is not None and allowance - row.polls >= 3 else None
            if row.polls >= allowance:  # spent, in this run or by this run's one extra check
                times.forget(row.order_id)
                raise Parked(f"order {row.order_id} still processing after {row.polls} status checks "
                             f"({elapsed:.0f} s); each later run checks it once more")
            continue
        times.finished(row.order_id, row.seen_init_s or 0.0, elapsed)
        ctx.ckpt.save_order_time(ctx.api_kind, row.seen_init_s or 0.0, elapsed)
        if status.status == "active":
            ctx.budget.charged()
            ctx.ckpt.save(row, state=State.GENERATED, output_url=status.output, credits=row.credits + 1,
                          polls=row.polls + 1, checked_at=now, error=None)
            return
        if job.reserved:  # a failed order is free: give its budget back
            ctx.budget.release()
            job.reserved = False
        _order_failed(ctx, job)
        return


def _order_failed(ctx: Context, job: Job) -> None:
    row = job.row
    failed = row.failed_orders + 1
    if failed <= ctx.cfg.retries.failed_orders:
        ctx.ckpt.save(row, state=State.UPLOADED, order_id=None, failed_orders=failed,
                      error=f"order {row.order_id} failed (free); resubmitting")
    else:
        ctx.ckpt.save(row, state=State.FAILED, failed_orders=failed, finished_at=time.time(),
                      error=f"order failed {failed} times (no credit charged)")
