"""generated -> done: fetch the output JPEG, check it decodes, write it atomically, record its hash.

The checkpoint says `done` only after the file has been renamed into place (the done marker is
written last, as img2dataset does with its shard stats).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from pathlib import Path

from PIL import Image

from pipeline.media import previews
from pipeline.media.previews import THUMBS
from pipeline.store.names import STEPS_DIR
from pipeline.store.atomic import write_atomically
from pipeline.errors import ItemError
from pipeline.run.stages import outbox
from pipeline.run.stages.context import Context, Job, Parked
from pipeline.run.states import State

_GONE = (403, 404, 410)
# Below this size decoding and writing take less time than handing the work to a thread, and a busy
# worker thread makes the event loop wait for the GIL after every socket call.
INLINE_BYTES = 64 * 1024
DECODE_ATTEMPTS = 4  # downloads of an output that does not decode, before it waits for the next run


async def run(ctx: Context, job: Job) -> None:
    row = job.row
    kept = job.spec is not None and not job.spec.final
    target = None if kept else ctx.cfg.output.dir / job.item.output_name
    formats = ("jpeg", "png") if kept else ("jpeg",)  # an intermediate cut-out may be a transparent PNG
    # Paid and fetched by an earlier run whose bucket would not take it: published from state.dir.
    waiting = outbox.kept(ctx, row.output_sha256) if ctx.outputs is not None and not kept else None
    for attempt in range(1, DECODE_ATTEMPTS + 1):
        data, waiting = waiting or await _fetch(ctx, row, formats, kept), None
        if data is None:
            return  # the link is gone: the row moved back to order again
        try:
            if kept:  # the next step's input: named by its bytes, written before the row says done
                name = f"{STEPS_DIR}/{hashlib.sha256(data).hexdigest()}"
                stat, sha256 = await asyncio.to_thread(_check_and_write, data, ctx.cfg.state_dir / name, formats)
                break
            name = job.item.output_name
            if ctx.discloser is not None:  # only the delivered picture: a chain's steps stay as received
                data = ctx.discloser.apply(name, data)
            if ctx.outputs is not None:
                size, sha256 = await outbox.publish(ctx, job, data, _checked_preview)
                ctx.ckpt.save(row, output_path=name, output_sha256=sha256, output_size=size,
                              output_mtime_ns=None, finished_at=time.time(), error=None,
                              **await _verdict(ctx, job, data, sha256))
                return
            # The report's preview, if it shows this picture by one, comes from the decode that checks it.
            thumbs = ctx.cfg.output.dir / THUMBS if previews.wants_preview(data) else None
            if len(data) <= INLINE_BYTES and thumbs is None:
                stat, sha256 = _check_and_write(data, target)
            else:
                stat, sha256 = await asyncio.to_thread(_check_and_write, data, target, ("jpeg",), thumbs)
            break
        except ItemError as exc:
            if attempt == DECODE_ATTEMPTS:
                raise Parked(f"{exc} after {attempt} downloads; kept for the next run") from None
            # A cut or garbled transfer: a fresh GET usually brings the whole picture.
            await ctx.client.pause(ctx.cfg.retries.backoff_base_s * 2 ** (attempt - 1))
    ctx.ckpt.save(row, output_path=name, output_sha256=sha256,
                  output_size=stat.st_size, output_mtime_ns=stat.st_mtime_ns, finished_at=time.time(),
                  error=None, **(await _verdict(ctx, job, target, sha256) if target else {"state": State.DONE}))


async def _verdict(ctx: Context, job: Job, output: Path | bytes, sha256: str) -> dict:
    """done, or review when its fidelity is below qa.min_fidelity (run/qa.py); a variant's steps are
    not scored (their pictures are not the source's product on a new background)."""
    if ctx.qa is None or job.spec is not None:
        return {"state": State.DONE}
    item = job.item
    source = item.image_path if item.image_path is not None else ctx.source_dir / str(job.row.image_sha256)
    return await ctx.qa.verdict(source, output, sha256)


async def _fetch(ctx: Context, row, formats: tuple[str, ...], kept: bool) -> bytes | None:
    """The output's bytes from its link; None if the link is gone (the row is moved back to order again)."""
    try:
        return await (ctx.client.download(row.output_url, formats=formats) if kept else
                      ctx.client.download(row.output_url))
    except ItemError as exc:
        if exc.http_status in _GONE:
            # The output link has expired: only a new order can bring the picture back.
            ctx.ckpt.save(row, state=State.UPLOADED if row.image_url else State.PENDING, order_id=None,
                          output_url=None, error=f"output link gone ({exc}); ordering again")
            return None
        # The order is paid for: keep its output URL and try the download again next run.
        raise Parked(f"output download failed, kept for the next run: {exc}") from None


def _check_and_write(data: bytes, target: Path, formats: tuple[str, ...] = ("jpeg",),
                     thumbs: Path | None = None) -> tuple[os.stat_result, str]:
    """In a worker thread: decode check, hash and atomic write in one hop off the event loop; with
    `thumbs`, the report's preview of the picture too, from the same decode."""
    preview = _check_jpeg(data, thumbs is not None) if formats == ("jpeg",) else _check_image(data, formats)
    stat, sha256 = write_atomically(target, data), hashlib.sha256(data).hexdigest()
    if thumbs is not None:
        previews.keep_output_preview(thumbs, sha256, preview)
    return stat, sha256


def _check_jpeg(data: bytes, preview: bool = False) -> bytes | None:
    return _check_image(data, ("jpeg",), preview)


def _checked_preview(data: bytes) -> bytes | None:
    """A JPEG output checked, and its preview (for an output written to a bucket: always made)."""
    return _check_jpeg(data, True)


def _check_image(data: bytes, formats: tuple[str, ...], preview: bool = False) -> bytes | None:
    """Raise ItemError unless `data` decodes whole as one of `formats`; with `preview`, the report's
    preview of it (previews.preview_of), made from the same decode."""
    wanted = " or ".join(f.upper() for f in formats)
    try:
        # Only the plugins asked for are tried (the magic bytes were checked at the download).
        with Image.open(io.BytesIO(data), formats=[f.upper() for f in formats]) as im:
            if (im.format or "").lower() not in formats:
                raise ItemError(f"output is {im.format or 'not an image'}, not a {wanted}")
            if im.format == "JPEG":
                # Decoded at a reduced scale: libjpeg still reads every block of the entropy-coded data, so
                # a cut or garbled picture fails as before, for a fraction of the CPU (#21 §5). At 1/8, or
                # at the preview's scale when it makes one.
                if preview:
                    previews.draft_for_preview(im)
                else:
                    im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            return previews.preview_of(im) if preview else None
    except ItemError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ItemError(f"output does not decode as a {wanted} ({type(exc).__name__})") from None
