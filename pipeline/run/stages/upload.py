"""pending -> uploaded: prepare the image, ask for a slot, PUT the exact bytes.

Identical source bytes are uploaded once per API instance and shared by every item that uses
them, within a run (one shared task) and across runs (the checkpoint's uploads table).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import ItemError, OutputError
from pipeline.media import previews
from pipeline.media.previews import THUMBS
from pipeline.media.images import PreparedImage, prepare_image
from pipeline.run.stages.context import UPLOAD_MAX_AGE_S, Context, Job
from pipeline.run.stages.download import INLINE_BYTES
from pipeline.run.states import State
from pipeline.store.atomic import read_file


async def run(ctx: Context, job: Job) -> None:
    key = ctx.upload_key(job.row.image_sha256)
    image_url, uploaded_at = await _shared_upload(ctx, job, key)
    ctx.ckpt.save(job.row, state=State.UPLOADED, image_url=image_url, uploaded_at=uploaded_at,
                  api_id=ctx.api_id, error=None)


async def image_url(ctx: Context, path: Path, sha256: str) -> str:
    """The imageUrl of a step's other picture (a style image), uploaded once and shared like sources."""
    def read() -> PreparedImage:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ItemError(f"cannot read image {path}: {exc.strerror or exc}") from None
        return prepare_image(data, max_bytes=ctx.cfg.images.max_upload_bytes)
    url, _ = await _shared_upload(ctx, None, ctx.upload_key(sha256), read)
    return url


async def _shared_upload(ctx: Context, job: Job | None, key: str,
                         read: Callable[[], PreparedImage] | None = None) -> tuple[str, float]:
    known = ctx.ckpt.upload(key)
    if known and time.time() - known[1] < UPLOAD_MAX_AGE_S:
        return known
    task = ctx.uploads.get(key)
    if task is None:
        task = asyncio.ensure_future(_upload(ctx, job, key, read))
        ctx.uploads[key] = task
        task.add_done_callback(lambda t: (ctx.uploads.pop(key, None), t.cancelled() or t.exception()))
    # Shielded: one item's cancellation must not cancel the upload other items wait on.
    return await asyncio.shield(task)


async def _upload(ctx: Context, job: Job | None, key: str,
                  read: Callable[[], PreparedImage] | None) -> tuple[str, float]:
    if read is not None:
        prepared = await asyncio.to_thread(read)
    elif job.item.image_path is not None and _size(job.item.image_path) <= INLINE_BYTES:
        data = _read_source(ctx, job)
        preview = _input_preview(ctx, job, data)  # a small file may still be a big picture: a thread then
        prepared = (await asyncio.to_thread(_prepare, ctx, data, preview) if preview else
                    _prepare(ctx, data, None))
    else:
        prepared = await asyncio.to_thread(_read_and_prepare, ctx, job)
    for attempt in (1, 2):
        slot = await ctx.client.upload_slot(len(prepared.data), prepared.content_type)
        try:
            await ctx.client.put_image(slot.put_url, prepared.data, prepared.content_type)
            break
        except ItemError as exc:
            # A presigned URL can expire between slot and PUT; one fresh slot is worth a try.
            if exc.http_status != 403 or attempt == 2:
                raise ItemError(f"upload rejected: {exc}", http_status=exc.http_status) from None
    uploaded_at = time.time()
    ctx.ckpt.save_upload(key, slot.image_url, uploaded_at, prepared.content_type, len(prepared.data))
    return slot.image_url, uploaded_at


def _size(path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # _read_source reports it


def _read_and_prepare(ctx: Context, job: Job) -> PreparedImage:
    """In a worker thread: file I/O and decoding stay off the event loop, in one hop."""
    data = _read_source(ctx, job)
    return _prepare(ctx, data, _input_preview(ctx, job, data))


def _prepare(ctx: Context, data: bytes, preview: Path | None) -> PreparedImage:
    """The bytes to send; and the report's preview of the source written to `preview`, if given."""
    prepared = prepare_image(data, max_bytes=ctx.cfg.images.max_upload_bytes)
    if preview is not None:
        with contextlib.suppress(OutputError):  # the report makes it, or says why it cannot
            previews.thumbnail(io.BytesIO(data), preview)
    return prepared


def _input_preview(ctx: Context, job: Job, data: bytes) -> Path | None:
    """Where the report's preview of this source goes, if the report shows it by one and it is not made
    yet: made now, from the bytes in hand, not at the run's end, where a first run of a big catalog
    waited for all of them (1 ms of CPU per 1024 px JPEG; Previews finds it made)."""
    sha256 = job.row.image_sha256
    if not sha256 or not previews.wants_preview(data):
        return None
    target = ctx.cfg.output.dir / THUMBS / f"{sha256[:24]}-in.jpg"
    return None if os.path.exists(target) else target


def _read_source(ctx: Context, job: Job) -> bytes:
    item = job.item
    try:
        if item.image_path is not None:
            return read_file(item.image_path)
        return read_file(ctx.source_dir / str(job.row.image_sha256))
    except OSError as exc:
        raise ItemError(f"cannot read image {item.image}: {exc.strerror or exc}") from None
