"""uploaded -> submitted: create the order (1 credit if it completes) and record its id at once.

There is no idempotency key: an orderId not written down is a credit paid for nothing. The
request and the checkpoint write are shielded together, so Ctrl-C cannot fall between them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time

from pipeline.lightx.client import Order
from pipeline.lightx.tools import request_body
from pipeline.run.stages import upload
from pipeline.errors import FatalApiError, ItemError
from pipeline.run.stages.context import UPLOAD_MAX_AGE_S, Context, Job, Parked
from pipeline.run.states import State


async def run(ctx: Context, job: Job) -> None:
    row = job.row
    if row.api_id != ctx.api_id or not row.uploaded_at or time.time() - row.uploaded_at >= UPLOAD_MAX_AGE_S:
        ctx.ckpt.save(row, state=State.PENDING, image_url=None, uploaded_at=None)
        return  # upload again: an imageUrl lives 24 h and belongs to one API instance
    if job.spec is not None and job.spec.images:  # style images: uploaded once, shared by every item
        values = dict(job.spec.values)
        for name, (path, sha256) in job.spec.images.items():
            values[name] = await upload.image_url(ctx, path, sha256)
        job.spec = dataclasses.replace(job.spec, values=values, images={})
    if refused := ctx.budget.reserve():
        raise Parked(refused)
    try:
        task = asyncio.ensure_future(_submit_and_record(ctx, job))
        ctx.critical.add(task)
        task.add_done_callback(lambda t: (ctx.critical.discard(t), t.cancelled() or t.exception()))
        await asyncio.shield(task)
    except ItemError as exc:
        ctx.budget.release()
        if job.reuploaded:
            raise ItemError(f"order rejected: {exc}") from None
        # The API may have dropped our imageUrl (expired, or never stored): upload once more.
        job.reuploaded = True
        ctx.ckpt.forget_upload(ctx.upload_key(row.image_sha256), row.image_url)
        ctx.ckpt.save(row, state=State.PENDING, image_url=None, uploaded_at=None, error=str(exc))
    except FatalApiError:
        ctx.budget.release()
        raise


async def _submit_and_record(ctx: Context, job: Job) -> None:
    spec = job.spec
    if spec is None:
        order: Order = await ctx.client.submit(job.row.image_url, job.item.prompt)
    else:
        order = await ctx.client.order(spec.tool.submit_path, request_body(spec.tool, job.row.image_url, spec.values))
    ctx.budget.submitted()
    ctx.times.expect(order.avg_s)
    job.reserved = True
    ctx.ckpt.save(job.row, state=State.SUBMITTED, order_id=order.order_id, submitted_at=ctx.times.clock.now(),
                  max_polls=order.max_retries, polls=0, checked_at=None, seen_init_s=None,
                  attempts=job.row.attempts + 1, error=None)
