"""Renditions (`output.renditions`): made locally from each delivered picture for 0 credits, in the
format and size asked, sRGB, with the disclosure XMP; a change touches only that rendition's files."""
from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from helpers import write_catalog
from pipeline.cli import main
from pipeline.inputs.config import load_config
from pipeline.inputs.delivery import rendition_location

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SQUARE = {"name": "square", "format": "webp", "quality": 80, "size": 160, "fit": "pad", "background": "#00FF00"}
COVER = {"name": "grid", "format": "png", "size": 64, "fit": "cover"}
SMALL = {"name": "small", "format": "jpeg", "quality": 70, "max_side": 48}


def edit(config: Path, change) -> None:
    doc = yaml.safe_load(config.read_text())
    change(doc)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def files(out: Path) -> dict[str, int]:
    """Every file under output.dir but the state, the table and the report: path -> mtime_ns."""
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and ".pipeline" not in p.parts and p.parent.name != "thumbs"
            and not p.name.startswith(("results", "report"))}


def table(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_renditions_have_their_format_size_profile_and_the_disclosure(sandbox, catalog_dir, exiftool):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"output": {"renditions": [SQUARE, COVER, SMALL]}})
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    expected = {"square": ("WEBP", (160, 160), ".webp"), "grid": ("PNG", (64, 64), ".png"),
                "small": ("JPEG", (48, 48), ".jpg")}
    for name, (kind, size, ext) in expected.items():
        paths = sorted((out / name).iterdir())
        assert [p.name for p in paths] == [f"sku-{i:03d}{ext}" for i in range(n)]
        for path, tags in zip(paths, exiftool(*paths)):
            with Image.open(path) as im:
                assert (im.format, im.size) == (kind, size)
            assert tags["File:MIMEType"] == f"image/{kind.lower()}"
            assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED
            assert tags["XMP-iptcExt:AISystemUsed"] == "LightX AI Background Generator"
            assert "sRGB" in tags["ICC_Profile:ProfileDescription"]
    rows = table(out)
    assert [r["square_path"] for r in rows] == [f"square/sku-{i:03d}.webp" for i in range(n)]
    assert [r["small_path"] for r in rows] == [f"small/sku-{i:03d}.jpg" for i in range(n)]
    parquet = pq.read_table(out / "results.parquet").to_pydict()
    assert parquet["grid_path"] == [f"grid/sku-{i:03d}.png" for i in range(n)]
    report = (out / "report.html").read_text()
    assert 'href="square/sku-000.webp">square</a>' in report and 'href="grid/sku-002.png">grid</a>' in report
    cfg = load_config(config)
    assert rendition_location(cfg, "sku-001.jpg", "square") == str(out / "square" / "sku-001.webp")


def test_pad_cover_and_max_side_on_a_wide_picture():
    import io
    from pipeline.inputs.delivery import Rendition
    from pipeline.media.renditions import render
    wide = Image.new("RGB", (300, 100), (200, 30, 30))
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    padded = Image.open(io.BytesIO(render(data, Rendition("p", "png", size=150, background="#00FF00"), None)))
    assert padded.size == (150, 150) and padded.getpixel((75, 5))[:3] == (0, 255, 0)  # bars above and below
    assert padded.getpixel((75, 75))[0] > 150
    covered = Image.open(io.BytesIO(render(data, Rendition("c", "jpeg", size=90, fit="cover"), None)))
    assert covered.size == (90, 90) and covered.getpixel((45, 2))[0] > 150  # filled, no bars
    assert Image.open(io.BytesIO(render(data, Rendition("m", "webp", max_side=120), None))).size == (120, 40)
    assert Image.open(io.BytesIO(render(data, Rendition("m", "webp", max_side=1000), None))).size == (300, 100)
    clear = Image.open(io.BytesIO(render(data, Rendition("t", "webp", size=150, background="transparent"), None)))
    assert clear.mode == "RGBA" and clear.getpixel((75, 5))[3] == 0


def test_adding_changing_and_removing_a_rendition_touches_only_its_files_for_0_credits(sandbox, catalog_dir):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url, config={"output": {"renditions": [SMALL]}})
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    first = files(out)
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert files(out) == first  # an unchanged rerun touches none

    edit(config, lambda doc: doc["output"]["renditions"].append(SQUARE))
    assert main(["run", str(config), "--quiet"]) == 0
    added = files(out)
    assert {k: v for k, v in added.items() if not k.startswith("square/")} == first
    assert sorted(k for k in added if k.startswith("square/")) == [f"square/sku-{i:03d}.webp" for i in range(n)]

    edit(config, lambda doc: doc["output"]["renditions"][1].update(quality=40))
    assert main(["run", str(config), "--quiet"]) == 0
    changed = files(out)
    assert {k: v for k, v in changed.items() if not k.startswith("square/")} == first
    assert all(changed[k] != added[k] for k in changed if k.startswith("square/"))

    edit(config, lambda doc: doc["output"]["renditions"][1].update(format="png"))  # another extension
    assert main(["run", str(config), "--quiet"]) == 0
    assert sorted(k for k in files(out) if k.startswith("square/")) == [f"square/sku-{i:03d}.png" for i in range(n)]

    edit(config, lambda doc: doc["output"].update(renditions=[SQUARE]))  # small removed
    assert main(["run", str(config), "--quiet"]) == 0
    after = files(out)
    assert not any(k.startswith("small/") for k in after)
    assert {k: v for k, v in after.items() if k.endswith(".jpg") and "/" not in k} == \
        {k: v for k, v in first.items() if "/" not in k}
    assert "small_path" not in table(out)[0] and table(out)[0]["square_path"] == "square/sku-000.webp"
    assert sandbox.ledger_snapshot()["credits"] == 0


def test_a_big_catalog_makes_its_renditions_in_worker_processes(sandbox, catalog_dir, monkeypatch):
    from pipeline.run import derive
    started = []
    real = derive.ProcessPoolExecutor

    def counting(workers, **kwargs):
        started.append(workers)
        return real(workers, **kwargs)
    monkeypatch.setattr(derive, "ProcessPoolExecutor", counting)
    monkeypatch.setattr(derive.os, "cpu_count", lambda: 2)
    n = 12
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"output": {"renditions": [SMALL, COVER]}})
    assert main(["run", str(config), "--quiet"]) == 0
    assert started == [2]
    rows = table(catalog_dir / "out")
    assert all(r["small_path"] and r["grid_path"] for r in rows) and len(rows) == n
    for r in rows:
        with Image.open(catalog_dir / "out" / r["grid_path"]) as im:
            assert im.size == (64, 64)


def test_renditions_are_made_in_the_run_when_no_worker_can_start(sandbox, catalog_dir, monkeypatch, caplog):
    """No process can be started (out of memory, a pod's pids limit): the renditions are made in the
    run's own process, and the run ends 0."""
    import errno
    from pipeline.run import derive

    class Refused(derive.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    monkeypatch.setattr(derive, "ProcessPoolExecutor", Refused)
    monkeypatch.setattr(derive.os, "cpu_count", lambda: 2)
    n = 12
    config = write_catalog(catalog_dir, n, base_url=sandbox.base_url,
                           config={"output": {"renditions": [SMALL, COVER]}, "qa": {"min_fidelity": 0}})
    assert main(["run", str(config), "--quiet"]) == 0
    rows = table(catalog_dir / "out")
    assert len(rows) == n and all(r["small_path"] and r["grid_path"] for r in rows)
    assert any("no worker process could be started" in r.message for r in caplog.records)


def test_a_rendition_worker_leaves_ctrl_c_to_the_run():
    # Ctrl-C reaches the whole process group: a rendition worker that took it would die with a
    # traceback on the user's terminal mid-batch. It ignores it; the run ends its pool itself.
    import os
    import signal
    from pipeline.run import derive

    with derive._pool(1) as pool:
        (starting,) = pool._processes  # started by _pool; spawned, it is still importing now
        os.kill(starting, signal.SIGINT)
        pid = pool.submit(os.getpid).result(timeout=120)
        os.kill(pid, signal.SIGINT)
        assert pool.submit(os.getpid).result(timeout=60) == pid == starting  # the same worker, still serving


@pytest.mark.parametrize("rendition, problem", [
    ({"name": "a", "format": "webp"}, "give either size (a square canvas) or max_side, not neither"),
    ({"name": "a", "format": "webp", "size": 100, "max_side": 50}, "not both"),
    ({"name": "a", "format": "gif", "size": 100}, "must be jpeg, png or webp"),
    ({"name": "a", "format": "jpeg", "size": 100, "background": "transparent"}, "needs format png or webp"),
    ({"name": "a", "format": "png", "max_side": 100, "fit": "cover"}, "fit and background go with size"),
    ({"name": "thumbs", "format": "png", "size": 100}, "'thumbs' is reserved"),
    ({"name": "a b", "format": "png", "size": 100}, "must be 1-40 letters"),
])
def test_a_wrong_rendition_is_a_config_error(sandbox, catalog_dir, capsys, rendition, problem):
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url, config={"output": {"renditions": [rendition]}})
    assert main(["validate", str(config)]) == 2
    assert problem in capsys.readouterr().err


def test_bucket_renditions_are_urls_in_the_table(sandbox, s3, tmp_path, exiftool, caplog):
    s3.client.create_bucket(Bucket="cat")
    config = write_catalog(tmp_path / "catalog", 2, base_url=sandbox.base_url,
                           config={"output": {"dir": "s3://cat/out", "renditions": [SQUARE]},
                                   "state": {"dir": "state"}})
    assert main(["run", str(config), "--quiet"]) == 0
    assert [k for k in s3.keys("cat", "out/square/")] == ["out/square/sku-000.webp", "out/square/sku-001.webp"]
    got = s3.get("cat", "out/square/sku-000.webp")
    assert got["ContentType"] == "image/webp"
    path = tmp_path / "sku-000.webp"
    path.write_bytes(got["Body"].read())
    assert exiftool(path)[0]["XMP-iptcExt:DigitalSourceType"] == TRAINED
    body = s3.get("cat", "out/results.csv")["Body"].read().decode()
    rows = list(csv.DictReader(body.splitlines()))
    assert rows[0]["square_path"] == "s3://cat/out/square/sku-000.webp"
    assert rendition_location(load_config(config), "sku-001.jpg", "square") == "s3://cat/out/square/sku-001.webp"
    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.run.derive"):
        assert main(["run", str(config), "--quiet"]) == 0
    assert not [r for r in caplog.records if r.name == "pipeline.run.derive"]  # nothing made again


def swapped_profile() -> bytes:
    """An ICC v2 RGB profile with sRGB's red and green primaries swapped: its red is sRGB's green."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)
    name = b"Swapped test RGB\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 12 + b"\0" * 67),
            (b"cprt", b"text\0\0\0\0no copyright\0"),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141))]
    tags += [(sig, b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0") for sig in (b"rTRC", b"gTRC", b"bTRC")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + bytes.fromhex("02100000") + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 24 + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


def test_a_picture_in_another_profile_is_converted_to_srgb():
    import io
    from PIL import ImageCms
    from pipeline.inputs.delivery import Rendition
    from pipeline.media.renditions import render
    icc = swapped_profile()
    assert "Swapped" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buffer, "PNG", icc_profile=icc)
    out = Image.open(io.BytesIO(render(buffer.getvalue(), Rendition("s", "png", max_side=64), None)))
    r, g, b = out.convert("RGB").getpixel((32, 32))
    assert g > 200 and r < 60  # its red is sRGB's green
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"])))


def test_each_variants_picture_gets_its_renditions(sandbox, catalog_dir, exiftool):
    cut = {"name": "marketplace", "steps": [{"tool": "remove-background", "background": "#FFFFFF"}]}
    shot = {"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title}"}]}
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url,
                           config={"variants": [shot, cut], "output": {"filename": "{variant}/{id}.jpg",
                                                                        "renditions": [SMALL]}})
    assert main(["run", str(config), "--quiet"]) == 0
    rows = table(catalog_dir / "out")
    assert [(r["id"], r["variant"], r["small_path"]) for r in rows] == [
        (f"sku-{i:03d}", v, f"small/{v}/sku-{i:03d}.jpg") for i in range(2) for v in ("lifestyle", "marketplace")]
    tags = {Path(t["SourceFile"]).parent.name: t for t in exiftool(*sorted((catalog_dir / "out" / "small").rglob("*.jpg")))}
    assert tags["marketplace"]["XMP-iptcExt:AISystemUsed"] == "LightX AI Remove Background"
    assert tags["lifestyle"]["XMP-iptcExt:AISystemUsed"] == "LightX AI Background Generator"
