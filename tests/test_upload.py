"""The upload stage, called directly against the sandbox: slot, PUT of the exact bytes, shared uploads."""
from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace

import aiohttp
from aiohttp.test_utils import TestServer

from helpers import jpeg_bytes
from pipeline.inputs.config import RetrySettings
from pipeline.lightx.client import Client
from pipeline.lightx.wire import Wire
from pipeline.run.stages import Context, Job, upload
from pipeline.run.states import State
from pipeline.sandbox import SANDBOX_KEY, SandboxOptions
from pipeline.sandbox.app import create_app, state_of
from pipeline.store.checkpoint import Checkpoint, Row


async def upload_all(tmp_path, images: dict[str, bytes], *, ckpt: Checkpoint, **sandbox):
    """Upload each (id -> bytes) item at once through upload.run; return (rows, sandbox ledger)."""
    app = create_app(SandboxOptions(fast=True, seed=1, **sandbox))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    cfg = SimpleNamespace(images=SimpleNamespace(max_upload_bytes=5 * 1024 * 1024),
                          output=SimpleNamespace(dir=tmp_path / "out"))
    rows = []
    try:
        async with Wire() as session:
            client = Client(session, str(server.make_url("/external/api")), SANDBOX_KEY,
                            retries=RetrySettings(transient=3, backoff_base_s=0.01, backoff_max_s=0.05))
            ctx = Context(cfg=cfg, client=client, ckpt=ckpt, api_id="sb", api_kind="sandbox",
                          source_dir=tmp_path, order_slots=asyncio.Semaphore(1))
            jobs = []
            for item_id, data in images.items():
                path = tmp_path / f"{item_id}.jpg"
                path.write_bytes(data)
                row = Row(id=item_id, fingerprint="f", image_sha256=hashlib.sha256(data).hexdigest())
                rows.append(row)
                jobs.append(Job(SimpleNamespace(image_path=path, image=path.name), row))
            ckpt.insert(rows)
            await asyncio.gather(*(upload.run(ctx, job) for job in jobs))
        return rows, state_of(app).ledger
    finally:
        await server.close()


def test_identical_bytes_are_uploaded_once_and_exactly_as_given(tmp_path):
    ckpt = Checkpoint.open(tmp_path / "c.sqlite")
    red, blue = jpeg_bytes((32, 24), "red", product=False), jpeg_bytes((32, 24), "blue", product=False)
    rows, ledger = asyncio.run(upload_all(tmp_path, {"a": red, "b": red, "c": blue}, ckpt=ckpt))
    assert all(r.state == State.UPLOADED and r.api_id == "sb" and r.image_url for r in rows)
    assert rows[0].image_url == rows[1].image_url != rows[2].image_url
    assert ledger.requests["put"] == 2 and ledger.uploads_completed == 2


def test_a_later_run_reuses_the_upload_the_checkpoint_remembers(tmp_path):
    ckpt = Checkpoint.open(tmp_path / "c.sqlite")
    red = jpeg_bytes((32, 24), "red", product=False)
    first, _ = asyncio.run(upload_all(tmp_path, {"a": red}, ckpt=ckpt))
    again, ledger = asyncio.run(upload_all(tmp_path, {"b": red}, ckpt=ckpt))
    assert again[0].image_url == first[0].image_url and ledger.requests["put"] == 0


def test_a_big_source_gets_its_report_preview_from_the_bytes_its_upload_reads(tmp_path, monkeypatch):
    """The report shows a big source by a thumbnail: made at the upload from the bytes in hand (in a
    thread, whether the file is big or a small file of a big picture), once; none for a small one."""
    from pipeline.media import previews

    heavy = jpeg_bytes((1024, 768), noise=True)        # over INLINE_BYTES
    light = jpeg_bytes((800, 600), "white")             # under it, but a picture the report shrinks
    small = jpeg_bytes((32, 24), "red", product=False)  # shown as itself
    assert len(heavy) > upload.INLINE_BYTES > len(light)
    threaded: list[str] = []
    to_thread = asyncio.to_thread

    def recorded(fn, *args):
        threaded.append(fn.__name__)
        return to_thread(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", recorded)
    ckpt = Checkpoint.open(tmp_path / "c.sqlite")
    rows, _ = asyncio.run(upload_all(tmp_path, {"a": heavy, "b": light, "c": small}, ckpt=ckpt))
    assert sorted(threaded) == ["_prepare", "_read_and_prepare"]  # the small picture stays on the loop
    thumbs = tmp_path / "out" / previews.THUMBS
    made = {p.name for p in thumbs.iterdir()}
    assert made == {f"{rows[0].image_sha256[:24]}-in.jpg", f"{rows[1].image_sha256[:24]}-in.jpg"}
    for row, name in zip(rows, "ab"):
        assert previews.thumbnail(tmp_path / f"{name}.jpg", tmp_path / "from-file.jpg")
        assert (thumbs / f"{row.image_sha256[:24]}-in.jpg").read_bytes() == (tmp_path / "from-file.jpg").read_bytes()
    calls = []
    monkeypatch.setattr(previews, "thumbnail", lambda *args: calls.append(args))
    ckpt2 = Checkpoint.open(tmp_path / "c2.sqlite")  # no upload to reuse: the sources are read again
    asyncio.run(upload_all(tmp_path, {"a": heavy, "b": light}, ckpt=ckpt2))
    assert calls == []  # made before: not again
