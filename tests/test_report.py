"""report.html: every link resolves inside output.dir, failures come first, user text is escaped,
previews are made once and upright, small images are shown as themselves, big catalogs are paged."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

import pipeline.media.previews
import pipeline.outputs.report
from helpers import TEST_SANDBOX, draw_product, write_catalog
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.cli import main
from pipeline.inputs.manifest import InvalidItem, Item
from pipeline.media.images import image_header
from pipeline.media.previews import AS_IS_BYTES, AS_IS_SIDE, BROWSER_FORMATS, THUMB_SIZE, thumbnail
from pipeline.outputs.deck import Deck
from pipeline.outputs.report import write_report
from pipeline.store.rowview import RowView
from pipeline.sandbox import SANDBOX_KEY
from pipeline.inputs.validate import validate

XSS = "<script>alert(1)</script>"


class Page(HTMLParser):
    """What a test needs from report.html: links, images, cards in order, summary stats."""

    def __init__(self, text: str):
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.cards: list[list[str]] = []   # [status, id] per <article>, in page order
        self.stats: dict[str, str] = {}
        self._stat: list[str] | None = None
        self._in_h3 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "script":
            self.scripts += 1
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "article":
            self.cards.append([classes[1], ""])
        self._in_h3 = tag == "h3"
        if "stat" in classes:
            self._stat = []

    def handle_endtag(self, tag):
        self._in_h3 = False
        if self._stat is not None and tag in ("a", "div"):
            value, label = self._stat
            self.stats[label] = value
            self._stat = None

    def handle_data(self, data):
        if self._in_h3:
            self.cards[-1][1] += data
        elif self._stat is not None and data.strip():
            self._stat.append(data.strip())


@pytest.fixture(scope="module")
def catalog(sandbox_server, tmp_path_factory):
    """A catalog run once for the module: 3 done, 1 failed (its order failed), 1 never run."""
    root = tmp_path_factory.mktemp("report") / "catalog"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (colour, title) in enumerate([("red", "a red mug"), ("blue", f"a blue vase {XSS}"),
                                         ("green", "a green bottle"), ("orange", "an orange lamp"),
                                         ("purple", "a purple bag")]):
        name = f"images/p{i}.{'png' if i % 2 else 'jpg'}"
        draw_product(root / name, colour, shape=i)
        rows.append({"id": f"sku-{i:03d}", "image": name, "title": title, "scene": "a marble counter"})
    config = write_catalog(root, base_url=sandbox_server.base_url, rows=rows,
                           config={"retries": {"failed_orders": 0}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIGHTX_API_KEY", SANDBOX_KEY)
        mp.delenv("LIGHTX_BASE_URL", raising=False)
        sandbox_server.set_options(**TEST_SANDBOX.to_dict())
        assert main(["run", str(config), "--quiet", "--only", "sku-000", "sku-001", "sku-002"]) == 1
        sandbox_server.set_options(rate_failed=1.0)
        try:
            assert main(["run", str(config), "--quiet", "--only", "sku-003"]) == 1
        finally:
            sandbox_server.set_options(**TEST_SANDBOX.to_dict())
    return config


def load(config: Path):
    cfg, manifest, _ = validate(config)
    ckpt = Checkpoint.open(cfg.state_dir / "checkpoint.sqlite")
    try:
        return cfg, manifest, ckpt.rows()
    finally:
        ckpt.close()


@pytest.fixture(scope="module")
def report(catalog):
    cfg, manifest, rows = load(catalog)
    path = write_report(cfg, manifest, rows, summary={"elapsed_s": 83.2})
    return cfg, path, Page(path.read_text("utf-8"))


def copy_of(config: Path, tmp_path: Path) -> Path:
    """A private copy of the catalog and its outputs, for tests that change files."""
    shutil.copytree(config.parent, tmp_path / "copy")
    return tmp_path / "copy" / config.name


def inside(out_dir: Path, link: str) -> Path:
    """The file a relative link names, asserting it is relative and stays inside `out_dir`."""
    parts = urlsplit(link)
    assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
    target = (out_dir / unquote(parts.path)).resolve()
    assert target.is_relative_to(out_dir.resolve()), link
    return target


def test_every_image_and_link_is_relative_and_resolves(report):
    cfg, path, page = report
    assert path == cfg.output.dir / "report.html"
    assert len(page.cards) == 5
    assert len(page.images) == 5 + 3  # every input, and the outputs of the 3 done items
    for link in page.images + page.links:
        if link.startswith("#"):
            continue
        assert inside(cfg.output.dir, link).is_file(), link
    outputs = [link for link in page.links if not link.startswith(("#", "results."))]
    assert sorted(outputs) == ["sku-000.jpg", "sku-001.jpg", "sku-002.jpg"]
    for src in page.images:
        with Image.open(inside(cfg.output.dir, src)) as im:
            assert im.format in BROWSER_FORMATS and max(im.size) <= 256


def test_small_images_are_shown_as_themselves(report):
    """96 px images need no thumbnail: outputs are linked where they are, inputs copied into thumbs/."""
    cfg, _, page = report
    shown = [src for src in page.images if not src.startswith("thumbs/")]
    assert sorted(shown) == ["sku-000.jpg", "sku-001.jpg", "sku-002.jpg"]
    copies = [src for src in page.images if src.startswith("thumbs/")]
    assert len(copies) == 5
    inputs = {p.read_bytes() for p in (cfg.config_path.parent / "images").iterdir()}
    for src in copies:
        copy = inside(cfg.output.dir, src)
        assert copy.read_bytes() in inputs  # the same bytes, not a re-encoded JPEG
        with Image.open(copy) as im:
            assert copy.suffix == "." + BROWSER_FORMATS[im.format]


def test_failures_come_first_then_pending_then_done_by_id(report):
    _, _, page = report
    assert page.cards == [["failed", "sku-003"], ["pending", "sku-004"], ["done", "sku-000"],
                          ["done", "sku-001"], ["done", "sku-002"]]


def test_summary_counts_credits_and_elapsed(report):
    _, _, page = report
    assert page.stats == {"Done": "3", "Failed": "1", "Pending": "1", "Credits spent": "3",
                          "Elapsed": "1 min 23 s"}


def test_prompts_and_errors_are_escaped(report):
    _, path, page = report
    text = path.read_text("utf-8")
    assert page.scripts == 0
    assert XSS not in text
    assert "a blue vase &lt;script&gt;alert(1)&lt;/script&gt; on a marble counter" in text
    assert "order failed" in text  # sku-003's error is shown


def previews(thumbs: Path) -> set[str]:
    return {p.name for p in thumbs.iterdir() if not p.name.startswith(".")}


def test_unchanged_previews_are_not_read_or_rewritten(report, monkeypatch):
    cfg, _, _ = report
    _, manifest, rows = load(cfg.config_path)
    thumbs = cfg.output.dir / "thumbs"
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    assert len(previews(thumbs)) == 5  # the inputs; the outputs are shown as themselves

    def no_image_is_opened(*args, **kwargs):
        raise AssertionError("an unchanged image was opened again")

    stats = []
    stat = os.stat
    monkeypatch.setattr(pipeline.media.previews.Image, "open", no_image_is_opened)
    monkeypatch.setattr(pipeline.media.previews.os, "stat", lambda path, **kw: stats.append(Path(path)) or stat(path, **kw))
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    # Images are known by their SHA-256 in the checkpoint, previews by one listdir: no system call per
    # item, but for the input of sku-004, which has never run (no checkpoint row), so costs a stat.
    assert [p.name for p in stats if p.suffix in (".jpg", ".png")] == ["p4.jpg"]
    assert {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()} == before
    assert len(page.images) == 5 + 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded(rows: dict[str, Row], item_id: str, *, output: Path | None = None,
             image: Path | None = None) -> dict[str, Row]:
    """`rows` as a run leaves them once it has hashed a new `image` or written a new `output`."""
    changes: dict = {"image_sha256": sha256(image)} if image else {}
    if output:
        st = output.stat()
        changes.update(output_sha256=sha256(output), output_size=st.st_size, output_mtime_ns=st.st_mtime_ns)
    return {**rows, item_id: dataclasses.replace(rows[item_id], **changes)}


def test_a_changed_output_gets_a_new_thumbnail_and_the_old_one_goes(catalog, tmp_path):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    write_report(cfg, manifest, rows)
    thumbs = cfg.output.dir / "thumbs"
    before = previews(thumbs)
    output = cfg.output.dir / "sku-000.jpg"
    Image.new("RGB", (900, 600), "black").save(output)
    rows = recorded(rows, "sku-000", output=output)  # previews are known by the checkpoint's SHA-256
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    after = previews(thumbs)
    assert before < after and len(after - before) == 1  # now too big to show as itself
    made = (after - before).pop()
    assert made.endswith("-out.jpg") and f"thumbs/{made}" in page.images and "sku-000.jpg" not in page.images
    with Image.open(thumbs / made) as im:
        assert im.size == (256, 171) and im.getpixel((10, 10)) == (0, 0, 0)

    Image.new("RGB", (200, 100), "white").save(output)  # small again: the thumbnail goes
    page = Page(write_report(cfg, manifest, recorded(rows, "sku-000", output=output)).read_text("utf-8"))
    assert previews(thumbs) == before and "sku-000.jpg" in page.images


def test_remote_invalid_and_missing_images_show_placeholders(catalog, tmp_path):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    sha = "ab" * 32
    (cfg.state_dir / "sources").mkdir(exist_ok=True)
    draw_product(tmp_path / "fetched.jpg", "navy").rename(cfg.state_dir / "sources" / sha)
    remote = [Item("url-fetched", "https://shop.example/a.jpg", "p", 10, image_url="https://shop.example/a.jpg"),
              Item("url-unfetched", "https://shop.example/b.jpg", "p", 11, image_url="https://shop.example/b.jpg"),
              Item("escape", "images/p0.jpg", "p", 12, image_path=manifest.items[0].image_path)]
    rows = {**rows, "url-fetched": Row("url-fetched", "fp", state="pending", image_sha256=sha),
            "escape": Row("escape", "fp", state="done", output_path="../catalog.yaml")}
    manifest = dataclasses.replace(manifest, items=manifest.items + remote,
                                   invalid=[InvalidItem(None, 13, [f"catalog.csv row 13: bad {XSS}"])])
    page_text = write_report(cfg, manifest, rows).read_text("utf-8")
    page = Page(page_text)
    assert ["failed", "row 13"] in page.cards and XSS not in page_text
    assert "Remote image not fetched yet" in page_text and "Output file missing" in page_text
    assert len(page.images) == 5 + 3 + 2  # plus the fetched remote source and the `escape` input
    assert all(not link.startswith("..") for link in page.links)
    assert page.stats["Failed"] == "2"


def test_big_images_get_thumbnails_and_only_they_use_threads(catalog, tmp_path, monkeypatch):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    images = cfg.config_path.parent / "images"
    Image.effect_noise((1200, 1000), 50).convert("RGB").save(images / "p0.jpg")  # big: a thread
    Image.new("RGB", (280, 200), "teal").save(images / "p1.png", "BMP")          # mid-size: serially
    Image.new("RGB", (64, 64), "gold").save(images / "p2.jpg", "TIFF")           # small, but no browser shows TIFF
    for i in range(3):
        rows = recorded(rows, f"sku-{i:03d}", image=images / manifest.items[i].image_path.name)
    pooled: list[str] = []

    class Pool(pipeline.media.previews.ThreadPoolExecutor):
        def map(self, fn, jobs):
            jobs = list(jobs)
            pooled.extend(Path(src).name for _, src in jobs)
            return super().map(fn, jobs)

    monkeypatch.setattr(pipeline.media.previews, "ThreadPoolExecutor", Pool)
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    assert pooled == ["p0.jpg"]
    sizes = {}
    for src in page.images:
        with Image.open(inside(cfg.output.dir, src)) as im:
            sizes[im.size] = im.format
    assert sizes[(256, 213)] == sizes[(256, 183)] == sizes[(64, 64)] == "JPEG"


def test_light_mid_size_images_are_shown_as_themselves_and_heavy_ones_get_thumbnails(catalog, tmp_path):
    """Up to 640 px and 200 KB a thumbnail would save the page little and cost milliseconds of CPU."""
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    images = cfg.config_path.parent / "images"
    light, heavy = images / "p0.jpg", images / "p1.png"
    draw_product(light, "red", size=AS_IS_SIDE)
    Image.effect_noise((AS_IS_SIDE, AS_IS_SIDE), 80).convert("RGB").save(heavy)
    output = draw_product(cfg.output.dir / "sku-000.jpg", "blue", size=AS_IS_SIDE)
    assert light.stat().st_size < AS_IS_BYTES < heavy.stat().st_size
    rows = recorded(recorded(rows, "sku-000", image=light, output=output), "sku-001", image=heavy)
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    assert "sku-000.jpg" in page.images  # the output, linked where it is
    shown = {inside(cfg.output.dir, src).read_bytes(): src for src in page.images}
    assert shown[light.read_bytes()].startswith("thumbs/")  # the input, linked into thumbs/
    assert heavy.read_bytes() not in shown
    with Image.open(cfg.output.dir / "thumbs" / f"{sha256(heavy)[:24]}-in.jpg") as im:
        assert (im.format, im.size) == ("JPEG", (THUMB_SIZE, THUMB_SIZE))


def test_small_inputs_are_copied_where_hard_links_fail(catalog, tmp_path, monkeypatch):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(pipeline.media.previews.os, "link", cross_device)
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    copies = [inside(cfg.output.dir, src) for src in page.images if src.startswith("thumbs/")]
    assert len(copies) == 5 and all(copy.stat().st_nlink == 1 for copy in copies)


def test_trusted_output_names_are_not_resolved(report, monkeypatch):
    """Names from the manifest were checked when it was loaded: no realpath per item."""
    cfg, _, _ = report
    _, manifest, rows = load(cfg.config_path)
    calls = []
    realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda path, **kw: calls.append(path) or realpath(path, **kw))
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    assert calls == [] and "sku-000.jpg" in page.links


def read_pages(out_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text("utf-8") for p in sorted(out_dir.glob("report*.html"))}


def test_big_catalogs_are_split_into_linked_pages(catalog, tmp_path, monkeypatch):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    monkeypatch.setattr(pipeline.outputs.report, "PAGE_SIZE", 2)
    write_report(cfg, manifest, rows, summary={"elapsed_s": 5.0})
    texts = read_pages(cfg.output.dir)
    assert list(texts) == ["report-2.html", "report-3.html", "report.html"]
    pages = {name: Page(text) for name, text in texts.items()}
    order = ["report.html", "report-2.html", "report-3.html"]
    assert [card for name in order for card in pages[name].cards] == [
        ["failed", "sku-003"], ["pending", "sku-004"], ["done", "sku-000"], ["done", "sku-001"],
        ["done", "sku-002"]]
    # The summary is on page 1 only, and links to where each section starts.
    assert pages["report.html"].stats["Done"] == "3" and pages["report-2.html"].stats == {}
    assert {"#failed", "#pending", "report-2.html#done"} <= set(pages["report.html"].links)
    assert 'id="done"' in texts["report-2.html"] and 'id="done"' not in texts["report-3.html"]
    for name, page in pages.items():
        assert "3 done" in texts[name] or name == "report.html"  # counts on every page
        assert {"report-2.html", "report-3.html", "report.html"} - {name} <= set(page.links)
        for link in page.images + page.links:
            if not link.startswith("#"):
                assert inside(cfg.output.dir, link.split("#")[0]).is_file(), (name, link)

    monkeypatch.setattr(pipeline.outputs.report, "PAGE_SIZE", 500)  # a smaller run: the extra pages go
    write_report(cfg, manifest, rows)
    assert list(read_pages(cfg.output.dir)) == ["report.html"]
    page = Page((cfg.output.dir / "report.html").read_text("utf-8"))
    assert len(page.cards) == 5 and not any(link.startswith("report") for link in page.links)


def test_unchanged_pages_are_not_rewritten(catalog, tmp_path, monkeypatch):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    monkeypatch.setattr(pipeline.outputs.report, "PAGE_SIZE", 2)
    write_report(cfg, manifest, rows)
    pages = [cfg.output.dir / name for name in ("report-2.html", "report-3.html")]
    for path in pages:
        os.utime(path, ns=(1, 1))
    write_report(cfg, manifest, rows)
    assert [path.stat().st_mtime_ns for path in pages] == [1, 1]
    rows["sku-001"] = dataclasses.replace(rows["sku-001"], order_id="a-new-order")  # a card on page 2
    write_report(cfg, manifest, rows)
    assert pages[0].stat().st_mtime_ns != 1 and pages[1].stat().st_mtime_ns == 1
    assert "a-new-order" in pages[0].read_text("utf-8")


def test_a_rerun_makes_only_page_one_again_until_a_card_changes(catalog, tmp_path, monkeypatch):
    cfg, manifest, _ = load(copy_of(catalog, tmp_path))
    monkeypatch.setattr(pipeline.outputs.report, "PAGE_SIZE", 2)
    made: list[int] = []  # the first card of each page whose cards were made
    real = Deck.cards
    monkeypatch.setattr(Deck, "cards", lambda deck, start, stop, how: made.append(start) or real(deck, start, stop,
                                                                                                    how))
    ckpt = Checkpoint.open(cfg.state_dir / "checkpoint.sqlite")
    try:
        ckpt.insert([Row(id="sku-004", fingerprint="f", image_sha256=hashlib.sha256(b"p4").hexdigest())])
        rows = RowView(ckpt)  # as a run reads them
        write_report(cfg, manifest, rows)
        whole = read_pages(cfg.output.dir)
        assert sorted(made) == [0, 2, 4]
        made.clear()
        write_report(cfg, manifest, rows)  # nothing changed: page 1 alone, the others left as they are
        assert made == [0] and read_pages(cfg.output.dir).keys() == whole.keys()
        assert Page(read_pages(cfg.output.dir)["report.html"]).cards == Page(whole["report.html"]).cards
        made.clear()
        ckpt.save(rows["sku-001"], order_id="a-new-order")  # a card on page 2
        write_report(cfg, manifest, rows)
        assert sorted(made) == [0, 2, 4] and "a-new-order" in read_pages(cfg.output.dir)["report-2.html"]
        made.clear()
        (cfg.output.dir / "report-3.html").unlink()  # a page gone: every page is made again
        write_report(cfg, manifest, rows)
        assert sorted(made) == [0, 2, 4] and (cfg.output.dir / "report-3.html").is_file()
    finally:
        ckpt.close()


def test_an_item_without_a_checkpoint_row_is_known_by_path_size_and_mtime(catalog, tmp_path):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    assert "sku-004" not in rows  # never run: no SHA-256 for its image yet
    thumbs = cfg.output.dir / "thumbs"
    write_report(cfg, manifest, rows)
    before = previews(thumbs)
    image = manifest.items[4].image_path
    draw_product(image, "black")
    os.utime(image, ns=(1, 1))  # even an older mtime counts as a change
    page = Page(write_report(cfg, manifest, rows).read_text("utf-8"))
    new = previews(thumbs) - before
    assert len(new) == 1 and len(before - previews(thumbs)) == 1 and f"thumbs/{new.pop()}" in page.images


def test_a_damaged_checkpoint_cannot_name_files(catalog, tmp_path):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    shutil.rmtree(cfg.output.dir / "thumbs", ignore_errors=True)
    bad = '../../"><img src=x>' + "0" * 24
    rows = {**rows, "sku-000": dataclasses.replace(rows["sku-000"], output_sha256=bad, image_sha256=bad)}
    text = write_report(cfg, manifest, rows).read_text("utf-8")
    assert "<img src=x>" not in text and "Preview unavailable" in text
    assert not [p for p in tmp_path.rglob("*") if "img" in p.name]  # no file was named by it
    assert all(inside(cfg.output.dir, src).is_file() for src in Page(text).images)


@pytest.mark.parametrize("fmt,mode,size,options", [
    ("JPEG", "RGB", (300, 200), {}), ("JPEG", "L", (17, 999), {}), ("JPEG", "RGB", (256, 256), {"progressive": True}),
    ("JPEG", "RGB", (64, 48), {"exif": b"Exif\0\0" + bytes(30000)}), ("PNG", "RGBA", (300, 5), {}),
    ("PNG", "P", (1, 1), {}), ("GIF", "P", (70, 80), {}), ("WEBP", "RGB", (120, 90), {}),
    ("WEBP", "RGB", (121, 91), {"lossless": True}), ("WEBP", "RGBA", (90, 120), {"exif": b"Exif\0\0" + bytes(8)}),
], ids=lambda value: str(value)[:20])
def test_image_header_agrees_with_pillow(tmp_path, fmt, mode, size, options):
    src = tmp_path / "image"
    Image.new(mode, size).save(src, fmt, **options)
    with Image.open(src) as im:
        assert image_header(src) == (im.format, *im.size)


@pytest.mark.parametrize("fmt,mode", [("JPEG", "CMYK"), ("TIFF", "RGB"), ("BMP", "RGB")])
def test_image_header_is_none_for_what_a_browser_may_not_show(tmp_path, fmt, mode):
    src = tmp_path / "image"
    Image.new(mode, (32, 32)).save(src, fmt)
    assert image_header(src) is None
    assert image_header(tmp_path / "missing") is None


def test_thumbnail_is_upright_flattened_and_bounded(tmp_path):
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.new("RGB", (1200, 600), "red").save(rotated, exif=exif)
    assert thumbnail(rotated, tmp_path / "t1.jpg")
    with Image.open(tmp_path / "t1.jpg") as im:
        assert im.size == (128, 256)

    clear = tmp_path / "clear.png"
    Image.new("RGBA", (400, 400), (0, 0, 0, 0)).save(clear)
    assert thumbnail(clear, tmp_path / "t2.jpg", size=64)
    with Image.open(tmp_path / "t2.jpg") as im:
        assert im.size == (64, 64) and min(im.getpixel((32, 32))) > 245  # on white, not black

    palette = tmp_path / "palette.gif"
    Image.new("P", (50, 20)).save(palette)
    assert thumbnail(palette, tmp_path / "t3.jpg")
    with Image.open(tmp_path / "t3.jpg") as im:
        assert im.size == (50, 20)  # small images are not blown up


@pytest.mark.parametrize("mode,suffix", [("CMYK", "jpg"), ("L", "jpg"), ("LA", "png"), ("I;16", "png"),
                                         ("1", "png"), ("RGBA", "webp"), ("RGB", "tiff")])
def test_thumbnail_of_any_mode_is_an_rgb_jpeg(tmp_path, mode, suffix):
    src = tmp_path / f"src.{suffix}"
    Image.new(mode, (600, 300)).save(src)
    assert thumbnail(src, tmp_path / "t.jpg")
    with Image.open(tmp_path / "t.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (256, 128))


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\0" * 64,
                                  b"\x89PNG\r\n\x1a\n" + b"\0" * 40], ids=["empty", "text", "jpeg", "png"])
def test_thumbnail_of_a_bad_image_is_false_and_writes_nothing(tmp_path, data):
    src = tmp_path / "bad.jpg"
    src.write_bytes(data)
    assert thumbnail(src, tmp_path / "t.jpg") is False
    assert thumbnail(tmp_path / "missing.jpg", tmp_path / "t.jpg") is False
    assert not (tmp_path / "t.jpg").exists()


def test_thumbnail_of_16_bit_grey_keeps_its_gradient(tmp_path):
    """16-bit values are scaled to 8 bits, not clipped: clipped, all but the darkest pixels were white."""
    src = tmp_path / "grey16.png"
    ramp = Image.linear_gradient("L").resize((600, 300))  # black at the top to white at the bottom
    ramp.convert("I").point(lambda value: value * 257).convert("I;16").save(src)
    with Image.open(src) as im:
        assert im.mode == "I;16" and im.getextrema() == (0, 65535)
    assert thumbnail(src, tmp_path / "t.jpg")
    with Image.open(tmp_path / "t.jpg") as im:
        assert im.size == (256, 128)
        column = [im.getpixel((128, y))[0] for y in range(im.height)]
    assert column[0] < 8 and column[-1] > 247 and sum(column) / len(column) == pytest.approx(127.5, abs=8)
    assert all(later >= earlier - 2 for earlier, later in zip(column, column[1:]))  # it keeps rising


def test_a_runs_big_pictures_are_previewed_at_upload_and_download_not_again_by_the_report(sandbox, tmp_path,
                                                                                          monkeypatch):
    """Pictures over AS_IS_SIDE get their thumbnails during the run (#21 §5): a source's from the bytes
    its upload reads, an output's from the decode that checks its download. The report at the run's
    end finds them made, and decodes nothing again."""
    root = tmp_path / "catalog"
    (root / "images").mkdir(parents=True)
    draw_product(root / "images" / "p0.jpg", "red", size=AS_IS_SIDE + 60)
    draw_product(root / "images" / "p1.png", "blue", size=AS_IS_SIDE + 60, shape=1)
    config = write_catalog(root, 2, base_url=sandbox.base_url)
    made: list[tuple[str, str]] = []  # (who asked, the preview's name)
    real = pipeline.media.previews.thumbnail

    def counted(src, dest, *args):
        made.append((sys._getframe(1).f_code.co_name, Path(dest).name))
        return real(src, dest, *args)

    monkeypatch.setattr(pipeline.media.previews, "thumbnail", counted)
    assert main(["run", str(config), "--quiet"]) == 0
    cfg, _, rows = load(config)
    inputs = {f"thumbs/{row.image_sha256[:24]}-in.jpg" for row in rows.values()}
    outputs = {f"thumbs/{row.output_sha256[:24]}-out.jpg" for row in rows.values()}
    assert sorted(made) == sorted(("_prepare", Path(name).name) for name in inputs)  # the upload's, no other
    shown = Page((cfg.output.dir / "report.html").read_text("utf-8")).images
    assert len(inputs | outputs) == 4 and inputs | outputs <= set(shown)
    for src in inputs | outputs:
        with Image.open(inside(cfg.output.dir, src)) as im:
            assert im.format == "JPEG" and max(im.size) == THUMB_SIZE
    made.clear()
    (cfg.output.dir / "report.html").unlink()
    assert main(["report", str(config)]) == 0
    assert made == [] and Page((cfg.output.dir / "report.html").read_text("utf-8")).images == shown
