"""Outputs paid for that the bucket has not taken yet: kept in `<state.dir>/outbox/<sha256>` until it does.

    data = kept(ctx, row)                       # the picture a row waits to publish, or None
    size, sha = await publish(ctx, job, data)   # PUT, retried while the budget lasts; else Parked

The order is paid, so its picture is never lost to a bucket that refuses for a while (503 SlowDown
storms, 5xx, resets). The first PUT that fails transiently writes the picture here (durably, before
the row says so), and the row stays `generated` with its output's sha256; the PUT is retried with the
backoff of store/retry.py, waiting on the event loop, not in a thread, while other items go on. If the
budget runs out, the item is parked: the next run uploads the kept picture without asking LightX (0
credits), and the run's exit message counts what waits. A fault no retry fixes (no bucket, no
credentials, access denied) is an OutputError, which stops the run, progress saved.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time

from pipeline.media.previews import THUMBS, keep_output_preview
from pipeline.store.names import FINGERPRINT_META, SHA256_META
from pipeline.run.stages.context import Context, Job, Parked
from pipeline.store.atomic import write_atomically
from pipeline.store.remote import StorageBusy

OUTBOX = "outbox"


def kept(ctx: Context, sha256: str | None) -> bytes | None:
    """The kept picture whose sha256 a `generated` row records, if it is here and whole."""
    if not sha256:
        return None
    try:
        data = (ctx.cfg.state_dir / OUTBOX / sha256).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def waiting(state_dir, rows) -> int:
    """How many `generated` rows have their picture kept in the outbox, waiting for the bucket."""
    try:
        names = set(os.listdir(state_dir / OUTBOX))
    except OSError:
        return 0
    return sum(1 for row in rows if row.state == "generated" and row.output_sha256 in names)


async def publish(ctx: Context, job: Job, data: bytes, check) -> tuple[int, str]:
    """Check `data` (`check(data)` raises ItemError, or gives its preview), keep its preview and PUT it
    as the item's output; (size, sha256) once the bucket holds it."""
    row, name = job.row, job.item.output_name
    sha256 = hashlib.sha256(data).hexdigest()
    metadata = {FINGERPRINT_META: row.fingerprint, SHA256_META: sha256}

    def first() -> None:  # in a worker thread: decode check and preview in one decode, one PUT
        keep_output_preview(ctx.cfg.output.dir / THUMBS, sha256, check(data))
        ctx.outputs.put(name, data, content_type="image/jpeg", metadata=metadata, once=True)

    def again() -> None:
        ctx.outputs.put(name, data, content_type="image/jpeg", metadata=metadata, once=True)

    path = ctx.cfg.state_dir / OUTBOX / sha256
    try:
        await asyncio.to_thread(first)
        if row.output_sha256 == sha256:  # kept by an earlier run, maybe: taken now
            path.unlink(missing_ok=True)
        return len(data), sha256
    except StorageBusy as exc:
        fault = exc
    if not path.exists():
        await asyncio.to_thread(write_atomically, path, data)
    ctx.ckpt.save(row, output_sha256=sha256, error=f"the bucket refuses for now, output kept in {path}: {fault}")
    backoff, started, tried = ctx.outputs.backoff, time.monotonic(), 1
    while (delay := backoff.next_wait(tried, started, fault.retry_after)) is not None:
        await ctx.client.pause(delay)  # Stopped at once on Ctrl-C; the kept picture waits
        tried += 1
        try:
            await asyncio.to_thread(again)
        except StorageBusy as exc:
            fault = exc
            continue
        path.unlink(missing_ok=True)
        return len(data), sha256
    raise Parked(f"the bucket did not take the output in {time.monotonic() - started:.0f} s ({fault}); "
                 f"kept in {path}, the next run uploads it (no new order)")
