"""What the AI-disclosure XMP and renditions cost (docs/disclosure.md's performance table).

    python benchmarks/disclosure.py                    # both parts, 1,000 outputs of 1536x1024
    python benchmarks/disclosure.py --outputs 200 --only renditions

1. disclosure  CPU per output of what the download stage adds (run.disclose.Discloser.apply: the
               packet built or merged, the APP1 segment put in, the image data's id), on a 1536x1024
               JPEG of about 0.5 MB: without XMP of its own, with the service's EXIF/XMP/COM/APP11
               (sandbox --own-metadata --own-c2pa), and the rerun check of a file that has it.
3. rerun       run.disclose.refresh and run.derive.derive over N done outputs: once after an upgrade
               (files without the disclosure), then as a no-op rerun pays them.
2. renditions  run.derive.derive over N done outputs, exactly as a run's finish calls it, for each
               kind: `size: 1024, fit: pad` WebP q80 and `max_side: 1024` JPEG q85. Wall time per
               1,000, and CPU per rendition counted over this process and its worker processes
               (RUSAGE_CHILDREN once the pool has shut down), so both cores' work is in it.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.inputs.config import load_config  # noqa: E402
from pipeline.inputs.manifest import Item  # noqa: E402
from pipeline.media.xmp import disclose  # noqa: E402
from pipeline.plan.delivery import disclosure_for  # noqa: E402
from pipeline.run.derive import derive  # noqa: E402
from pipeline.run.disclose import Discloser  # noqa: E402
from pipeline.sandbox.metadata import with_own_metadata  # noqa: E402
from pipeline.store.checkpoint import Row  # noqa: E402

SIZE = (1536, 1024)


def picture(seed: int) -> bytes:
    """A photo-like 1536x1024 JPEG (q90): gradients, shapes and noise, so it compresses as photos do."""
    img = Image.radial_gradient("L").resize(SIZE).convert("RGB")
    draw = ImageDraw.Draw(img)
    for k in range(12):
        x, y = (seed * 97 + k * 131) % SIZE[0], (seed * 53 + k * 71) % SIZE[1]
        draw.ellipse((x, y, x + 300, y + 200), fill=((k * 40 + seed) % 255, (k * 90) % 255, (seed * 7) % 255))
    noise = Image.effect_noise(SIZE, 40).convert("RGB")
    img = Image.blend(img.filter(ImageFilter.GaussianBlur(2)), noise, 0.25)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def catalog(root: Path, renditions: list[dict]) -> Path:
    (root / "m.csv").write_text("id,image\n")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump({"manifest": "m.csv", "output": {"dir": "out", "renditions": renditions}}))
    return config


def bench_disclosure(rounds: int) -> list[tuple[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="bench-disclosure-"))
    cfg = load_config(catalog(root, []))
    item = Item("sku-1", "a.jpg", "a red shoe on a marble counter", 2, output_name="sku-1.jpg")
    discloser = Discloser(cfg, [item])
    plain = picture(1)
    own = with_own_metadata(plain, c2pa=True)
    done = disclose(own, disclosure_for(cfg, item, None))
    figures = []
    for label, data, call in (("no XMP of its own", plain, lambda d: discloser.apply("sku-1.jpg", d)),
                              ("service's EXIF/XMP/COM/APP11", own, lambda d: discloser.apply("sku-1.jpg", d)),
                              ("rerun check (already carried)", done, lambda d: discloser.apply("sku-1.jpg", d))):
        call(data)
        start = time.process_time()
        for _ in range(rounds):
            call(data)
        figures.append((f"disclosure, {label}, {len(data) // 1024} KB", (time.process_time() - start) / rounds * 1e3))
    return figures


def bench_renditions(n: int) -> list[tuple[str, float, float]]:
    kinds = {"size 1024 pad, WebP q80": {"name": "square", "format": "webp", "quality": 80, "size": 1024,
                                         "fit": "pad"},
             "max_side 1024, JPEG q85": {"name": "web", "format": "jpeg", "quality": 85, "max_side": 1024}}
    root = Path(tempfile.mkdtemp(prefix="bench-renditions-"))
    out = root / "out"
    out.mkdir()
    sources = [picture(k) for k in range(8)]  # eight distinct pictures, written as N files
    items, rows = [], {}
    for k in range(n):
        name = f"sku-{k:05d}.jpg"
        data = sources[k % len(sources)]
        (out / name).write_bytes(data)
        items.append(Item(f"sku-{k:05d}", "a.jpg", "", k + 2, output_name=name))
        rows[items[-1].id] = Row(id=items[-1].id, fingerprint="f", state="done", output_path=name,
                                 output_sha256=hashlib.sha256(data).hexdigest(), output_size=len(data))
    figures = []
    for label, rendition in kinds.items():
        cfg = load_config(catalog(root, [rendition]))
        wall, own = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        made = derive(cfg, items, rows)
        wall = time.perf_counter() - wall
        after, after_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(getattr(after, f) - getattr(own, f) + getattr(after_children, f) - getattr(children, f)
                  for f in ("ru_utime", "ru_stime"))
        assert made == n, (made, n)
        figures.append((f"renditions, {label}", wall / n * 1000, cpu / n * 1e3))
    return figures


def bench_rerun(n: int) -> list[tuple[str, float]]:
    """What a rerun pays per done output: once after an upgrade (every file read and given the
    disclosure), then on every no-op rerun (records checked, one stat per file and rendition)."""
    from pipeline.run.disclose import refresh
    from pipeline.store.checkpoint import Checkpoint
    root = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    cfg = load_config(catalog(root, [{"name": "web", "format": "jpeg", "max_side": 32}]))
    out = cfg.output.dir
    out.mkdir()
    tiny = io.BytesIO()
    Image.new("RGB", (48, 48), "white").save(tiny, "JPEG")
    data = tiny.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    ckpt = Checkpoint.open(cfg.checkpoint_path)
    items, rows = [], {}
    for k in range(n):
        name = f"sku-{k:06d}.jpg"
        (out / name).write_bytes(data)
        st = (out / name).stat()
        items.append(Item(f"sku-{k:06d}", "a.jpg", "", k + 2, output_name=name))
        rows[items[-1].id] = Row(id=items[-1].id, fingerprint="f", state="done", output_path=name,
                                 output_sha256=sha, output_size=st.st_size, output_mtime_ns=st.st_mtime_ns)
    ckpt.insert(list(rows.values()))
    figures = []
    start = time.process_time()
    assert refresh(cfg, ckpt, rows, items) == n
    ckpt.flush()
    figures.append((f"first run after the upgrade, {n} outputs of {len(data)} B: each read and rewritten",
                    (time.process_time() - start) / n * 1e3))
    derive(cfg, items, rows)
    start = time.process_time()
    assert refresh(cfg, ckpt, rows, items) == 0 and derive(cfg, items, rows) == 0
    figures.append((f"no-op rerun, {n} outputs with one rendition: records checked, nothing read",
                    (time.process_time() - start) / n * 1e3))
    ckpt.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--rerun-outputs", type=int, default=100_000)
    parser.add_argument("--only", choices=("disclosure", "renditions", "rerun"))
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, Pillow {Image.__version__}")
    if args.only in (None, "rerun"):
        for label, ms in bench_rerun(args.rerun_outputs):
            print(f"| {label} | {ms * 1000:.1f} µs CPU per output |")
    if args.only in (None, "disclosure"):
        for label, ms in bench_disclosure(args.rounds):
            print(f"| {label} | {ms:.3f} ms CPU per output | bar 0.3 ms |")
    if args.only in (None, "renditions"):
        for label, per_1000, cpu_ms in bench_renditions(args.outputs):
            print(f"| {label} | {per_1000:.1f} s per 1,000 (wall, {args.outputs} outputs) | "
                  f"{cpu_ms:.1f} ms CPU per rendition |")


if __name__ == "__main__":
    main()
