"""The download stage: an output that does not decode is fetched again in the same run."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from PIL import Image

from helpers import jpeg_bytes, write_catalog
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.cli import main
from pipeline.run.stages import Context, Job, Parked, download


class Downloads:
    """A client whose downloads answer from a list (the last one repeats)."""

    def __init__(self, *answers: bytes):
        self.answers, self.calls, self.pauses = list(answers), 0, []

    async def download(self, url: str) -> bytes:
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def run_download(tmp_path, client: Downloads) -> tuple[Row, Exception | None]:
    cfg = SimpleNamespace(output=SimpleNamespace(dir=tmp_path),
                          retries=SimpleNamespace(backoff_base_s=0.5))
    ckpt = Checkpoint.open(tmp_path / "checkpoint.sqlite")
    row = Row(id="a", fingerprint="f", state="generated", output_url="http://cdn/a.jpg")
    ckpt.insert([row])
    ctx = Context(cfg=cfg, client=client, ckpt=ckpt, api_id="x", api_kind="sandbox", source_dir=tmp_path,
                  order_slots=asyncio.Semaphore(1))
    job = Job(SimpleNamespace(output_name="a.jpg"), row)
    try:
        asyncio.run(download.run(ctx, job))
        return row, None
    except Parked as exc:
        return row, exc
    finally:
        ckpt.close()


def test_a_truncated_output_is_fetched_again_with_backoff(tmp_path):
    good = jpeg_bytes((64, 64), "teal", product=False)
    client = Downloads(good[: len(good) // 2], good[:-40], good)
    row, parked = run_download(tmp_path, client)
    assert parked is None and row.state == "done"
    assert client.calls == 3 and client.pauses == [0.5, 1.0]
    assert (tmp_path / "a.jpg").read_bytes() == good


def test_an_output_that_never_decodes_is_parked_after_a_few_downloads(tmp_path):
    good = jpeg_bytes((64, 64), "teal", product=False)
    client = Downloads(good[: len(good) // 2])
    row, parked = run_download(tmp_path, client)
    assert row.state == "generated" and "does not decode" in str(parked) and "4 downloads" in str(parked)
    assert client.calls == download.DECODE_ATTEMPTS
    assert not (tmp_path / "a.jpg").exists()


def test_truncated_downloads_from_the_sandbox_end_done_in_one_run(sandbox, catalog_dir):
    sandbox.set_options(rate_truncated=0.1, seed=11)  # a fresh fault sequence, whatever ran before
    config = write_catalog(catalog_dir, 20, base_url=sandbox.base_url,
                           config={"retries": {"backoff_base_s": 0.01}})
    assert main(["run", str(config), "--quiet"]) == 0
    for path in (catalog_dir / "out").glob("sku-*.jpg"):
        with Image.open(path) as im:
            im.load()
    assert sandbox.ledger_snapshot()["credits"] == 20


def test_a_big_output_is_checked_and_previewed_by_one_decode(tmp_path, monkeypatch):
    """The report shows a big output by a thumbnail: the decode that checks the download makes it too,
    the same bytes the report would have made from the file, and a cut copy still fails the check."""
    from pipeline.media import previews

    good = jpeg_bytes((1024, 768), noise=True)  # over INLINE_BYTES: checked in a thread
    decodes = []
    decoder = Image._getdecoder

    def counted(mode, name, *args):  # one per decode that reads the picture's data
        decodes.append(args[0] if args else None)
        return decoder(mode, name, *args)

    monkeypatch.setattr(Image, "_getdecoder", counted)
    client = Downloads(good[: len(good) // 2], good)
    row, parked = run_download(tmp_path, client)
    assert parked is None and row.state == "done" and client.calls == 2
    assert len(decodes) == 2  # each download decoded once: the check and the preview share it
    monkeypatch.setattr(Image, "_getdecoder", decoder)
    made = tmp_path / "thumbs" / f"{row.output_sha256[:24]}-out.jpg"
    assert previews.thumbnail(tmp_path / "a.jpg", tmp_path / "from-file.jpg")
    assert made.read_bytes() == (tmp_path / "from-file.jpg").read_bytes()


def test_an_output_shown_as_itself_gets_no_preview(tmp_path):
    good = jpeg_bytes((200, 150), "teal")
    row, parked = run_download(tmp_path, Downloads(good))
    assert parked is None and row.state == "done"
    assert not (tmp_path / "thumbs").exists()
