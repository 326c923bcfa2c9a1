"""report.html: every link resolves inside output.dir, failures come first, user text is escaped,
thumbnails are made once and upright."""
from __future__ import annotations

import dataclasses
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from conftest import TEST_SANDBOX, draw_product, write_catalog
from pipeline.checkpoint import Checkpoint, Row
from pipeline.cli import main
from pipeline.manifest import InvalidItem, Item
from pipeline.report import thumbnail, write_report
from pipeline.sandbox import SANDBOX_KEY
from pipeline.validate import validate

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
            assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) <= 256


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


def test_unchanged_thumbnails_are_not_regenerated(report):
    cfg, _, _ = report
    _, manifest, rows = load(cfg.config_path)
    thumbs = cfg.output.dir / "thumbs"
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    assert len(before) == 8
    write_report(cfg, manifest, rows)
    assert {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()} == before


def test_a_changed_output_gets_a_new_thumbnail_and_the_old_one_goes(catalog, tmp_path):
    cfg, manifest, rows = load(copy_of(catalog, tmp_path))
    write_report(cfg, manifest, rows)
    thumbs = cfg.output.dir / "thumbs"
    before = {p.name for p in thumbs.iterdir()}
    output = cfg.output.dir / "sku-000.jpg"
    Image.new("RGB", (300, 200), "black").save(output)
    os.utime(output, ns=(1, 1))  # even an older mtime counts as a change
    write_report(cfg, manifest, rows)
    after = {p.name for p in thumbs.iterdir()}
    assert len(after) == len(before) and len(after - before) == 1
    with Image.open(thumbs / (after - before).pop()) as im:
        assert im.size == (256, 171) and im.getpixel((10, 10)) == (0, 0, 0)


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
