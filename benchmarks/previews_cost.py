"""CPU per item of the report's previews, on a catalog of done items with 640 px inputs and outputs.

    python benchmarks/previews_cost.py                   # 400 items, 640x640 JPEG inputs and outputs
    python benchmarks/previews_cost.py --items 1000 --size 1024 --inputs png

Builds a catalog (CSV + YAML) of N items, each with its own input and output image (gradients, shapes
and noise, so a 640 px JPEG is about 100 KB), and checkpoint rows that say each is done with its
SHA-256s, as a run leaves them. Then calls `write_report` as `pipeline run` does: "cold" with an empty
thumbs/, "warm" again with nothing changed. Each prints this process's CPU (time.process_time, all
threads) per item for the whole report and for `Previews.finish` within it, best of --rounds.

Not part of the test suite: tests never assert timings. Needs only the project's own dependencies.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from pipeline.store.checkpoint import Row
from pipeline.inputs.config import load_config
from pipeline.inputs.manifest import load_manifest
from pipeline.media.previews import Previews
from pipeline.outputs.report import write_report


def draw(path: Path, size: int, seed: int) -> None:
    """A product-like picture: a tinted gradient, a few shapes, mild noise; saved by suffix."""
    rng = random.Random(seed)
    tint = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    im = Image.blend(tint, Image.linear_gradient("L").resize((size, size)).convert("RGB"), 0.5)
    pen = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(size // 10, size // 3)
        shape = pen.ellipse if rng.random() < 0.5 else pen.rectangle
        shape((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.effect_noise((size, size), 32).convert("RGB")
    im = Image.blend(im, noise, 0.15)
    im.save(path, quality=90) if path.suffix == ".jpg" else im.save(path)


def catalog(root: Path, items: int, size: int, inputs: str) -> tuple[Path, dict[str, Row]]:
    """Images, manifest and config under `root`, and the checkpoint rows of a finished run."""
    (root / "images").mkdir(parents=True)
    out = root / "out"
    out.mkdir()
    rows: dict[str, Row] = {}
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "title"])
        for i in range(items):
            item_id = f"sku-{i:05d}"
            src = root / "images" / f"{item_id}.{inputs}"
            draw(src, size, seed=2 * i)
            draw(out / f"{item_id}.jpg", size, seed=2 * i + 1)
            writer.writerow([item_id, f"images/{src.name}", f"product {i}"])
            output = out / f"{item_id}.jpg"
            st = output.stat()
            rows[item_id] = Row(item_id, "fp", state="done", image_sha256=sha256(src),
                                output_path=output.name, output_sha256=sha256(output),
                                output_size=st.st_size, output_mtime_ns=st.st_mtime_ns, credits=1)
    config = root / "catalog.yaml"
    config.write_text(yaml.safe_dump({"manifest": "catalog.csv", "prompt": "{title} on a white counter",
                                      "output": {"dir": "out"}}, sort_keys=False))
    return config, rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(cfg, manifest, rows, finish_cpu: list[float]) -> float:
    """CPU seconds of one write_report; `finish_cpu` gets those spent in Previews.finish."""
    finish_cpu.clear()
    started = time.process_time()
    write_report(cfg, manifest, rows, summary={"elapsed_s": 1.0})
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--size", type=int, default=640, help="side of inputs and outputs, px")
    parser.add_argument("--inputs", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--rounds", type=int, default=3, help="cold and warm builds each; the best counts")
    args = parser.parse_args(argv)

    finish_cpu: list[float] = []
    finish = Previews.finish

    def timed_finish(self) -> None:
        started = time.process_time()
        finish(self)
        finish_cpu.append(time.process_time() - started)

    Previews.finish = timed_finish
    root = Path(tempfile.mkdtemp(prefix="previews-cost-"))
    try:
        config, rows = catalog(root / "catalog", args.items, args.size, args.inputs)
        cfg = load_config(config, env={})
        manifest = load_manifest(cfg)
        sizes = [p.stat().st_size for p in (root / "catalog" / "images").iterdir()]
        print(f"{args.items} items, {args.size}x{args.size} {args.inputs} inputs "
              f"(mean {sum(sizes) / len(sizes) / 1000:.0f} KB) and JPEG outputs")
        thumbs = cfg.output.dir / "thumbs"
        figures = {}
        for phase in ("cold", "warm"):
            best = None
            for _ in range(args.rounds):
                if phase == "cold":
                    shutil.rmtree(thumbs, ignore_errors=True)
                total = measure(cfg, manifest, rows, finish_cpu)
                if best is None or total < best[0]:
                    best = (total, sum(finish_cpu))
            figures[phase] = best
        print(f"{'':6}{'report ms/item':>16}{'previews.finish ms/item':>26}")
        for phase, (total, in_finish) in figures.items():
            print(f"{phase:6}{total / args.items * 1000:16.3f}{in_finish / args.items * 1000:26.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
