"""A million rows: wall time and peak RSS of `pipeline validate`, a dry run of shard 0/8, a no-op rerun,
`pipeline report` and `pipeline status`, on an `id,image,prompt` CSV whose rows share a thousand local images.

    python benchmarks/scale.py                       # 100k and 1M rows, validate and the dry run of 0/8
    python benchmarks/scale.py --rows 100000 --rerun # also the finished catalog's rerun, report and status
    python benchmarks/scale.py --keep /dev/shm/scale # keep (and reuse) the catalogs there

With --rerun: a no-op rerun (--repeat times; the very first after the build also writes the
disclosure XMP into every output and records it, 0 credits), `pipeline report` (the full rebuild
from the checkpoint), "first write" (a no-op rerun after results.* and the stamps are deleted: the
table and every page written anew) and `pipeline status`.

Every figure is of the `pipeline` child alone, reaped with os.wait4: its wall time, CPU (user + sys) and
peak RSS. Linux counts a child's peak RSS from the parent's at the fork, so the catalog and the finished
checkpoint are made by child processes too, and this process stays small (its own peak is printed).
The finished checkpoint of the rerun case is written directly (the bench's builder,
bench_cases.build_done_checkpoint; one tiny output file per item), not bought from the sandbox. The load
average at the start of each command is printed: the machine is shared, so CPU and RSS are the robust
figures and wall time is read with the load beside it.

Not part of the test suite: tests never assert timings. Needs only the project's own dependencies.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARS = {"validate": (10.0, 600), "dry run 0/8": (8.0, 300), "no-op rerun": (60.0, 1024),
        "report": (60.0, 600), "first write": (None, 1024), "status": (3.0, None)}  # first write: memory only
STAMPS = ("results.stamp.json", "report.stamp.json")  # in the config's state.dir, out/.pipeline


def make_catalog(root: Path, rows: int, images: int, titles: bool = False) -> Path:
    """`images` distinct small JPEGs, a CSV of `rows` rows (id,image,prompt) and a config; reused if present.
    `titles`: columns id,image,title,brand,price instead, and the prompt a template over them, so that
    every row's prompt is its own and three more cells a row are kept (a store's catalog)."""
    from PIL import Image

    config = root / "config.yaml"
    if config.exists():
        return config
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.new("RGB", (32, 32), ((i * 37) % 256, (i * 91) % 256, (i // 256) % 256)).save(
            root / "images" / f"p{i:05d}.jpg", quality=80)
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "image", "title", "brand", "price"] if titles else ["id", "image", "prompt"])
        for i in range(rows):
            k = i % images  # a product's photos share its prompt, as a catalog's variants do
            if titles:
                out.writerow([f"sku-{i:07d}", f"images/p{k:05d}.jpg", f"Product {i}", f"Brand {i % 50}",
                              f"{i % 997 / 10:.2f}"])
            else:
                out.writerow([f"sku-{i:07d}", f"images/p{k:05d}.jpg",
                              f"product {k} on a white marble kitchen counter, soft natural light"])
    doc = {"manifest": "catalog.csv", "output": {"dir": "out", "filename": "{id}.jpg"},
           "api": {"base_url": "http://127.0.0.1:9/external/api"}, "budget": {"confirm_over": 100_000_000}}
    if titles:
        doc["prompt"] = "{title} by {brand} on a white marble kitchen counter, soft natural light"
    config.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")  # JSON is YAML
    return config


def build_done(config: Path) -> None:
    """Every item done, as a finished run leaves it: the bench's own builder (bench_cases.py)."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    from bench_cases import build_done_checkpoint
    build_done_checkpoint(config)


def in_child(function: str, *args: str) -> None:
    """Run `function(*args)` of this module in a child process: what it holds never inflates the
    peak RSS of the `pipeline` children forked from here later."""
    code = f"import sys; sys.path[:0] = {[str(REPO), str(REPO / 'benchmarks')]!r}; import scale; scale.{function}(*sys.argv[1:])"
    subprocess.run([sys.executable, "-c", code, *args], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def make_catalog_at(root: str, rows: str, images: str, titles: str = "") -> None:
    make_catalog(Path(root), int(rows), int(images), titles == "titles")


def forget_outputs(root: Path) -> None:
    """results.* and the stamps gone: the next run writes the table and every report page anew."""
    for path in (root / "out" / "results.csv", root / "out" / "results.parquet",
                 *(root / "out" / ".pipeline" / name for name in STAMPS)):
        path.unlink(missing_ok=True)


def measure_child(args: list[str], cwd: Path) -> dict:
    load = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO), "LIGHTX_API_KEY": "scale-bench-key"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "load": load, "stderr": err}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, action="append", help="catalog sizes (default 100000 and 1000000)")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--rerun", action="store_true", help="also a no-op rerun and status of a finished catalog")
    p.add_argument("--keep", type=Path, help="folder to keep the catalogs in (reused when present)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each command, one line each (a first rerun "
                   "writes results and report; the next is the no-op)")
    p.add_argument("--only", help=f"comma-separated cases to measure, of: {', '.join(BARS)}")
    p.add_argument("--titles", action="store_true", help="a store-like catalog: title, brand and price columns, "
                                                         "the prompt a template over them (every row's its own)")
    args = p.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(BARS)
    if only - set(BARS):
        p.error(f"--only: unknown cases {', '.join(sorted(only - set(BARS)))}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    print("| rows | command | exit | wall | CPU | peak RSS | load (1 min) | bar |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows in args.rows or [100_000, 1_000_000]:
        root = work / (f"rows-{rows}-titles" if args.titles else f"rows-{rows}")
        config = root / "config.yaml"
        if not config.exists():
            in_child("make_catalog_at", str(root), str(rows), str(args.images), "titles" if args.titles else "")
        cases = [("validate", ["validate", str(config)]),
                 ("dry run 0/8", ["run", str(config), "--dry-run", "--shard", "0/8", "--quiet"])]
        if args.rerun:
            if not (root / "out" / ".pipeline" / "checkpoint.sqlite").exists():  # the config's state.dir
                print(f"[scale] writing {rows} done items", file=sys.stderr)
                in_child("build_done", str(config))
            rerun = ["run", str(config), "--quiet", "--json"]
            cases += [("no-op rerun", rerun), ("report", ["report", str(config)]), ("first write", rerun),
                      ("status", ["status", str(config)])]
        for name, cmd in cases:
            if name not in only:
                continue
            for k in range(args.repeat):
                if name == "first write":
                    forget_outputs(root)
                r = measure_child(cmd, root)
                wall_bar, rss_bar = BARS[name]
                bar = ", ".join(([f"<= {wall_bar:g} s"] if wall_bar else []) + ([f"<= {rss_bar} MB"] if rss_bar else []))
                label = name if args.repeat == 1 else f"{name} ({k + 1} of {args.repeat})"
                print(f"| {rows:,} | {label} | {r['rc']} | {r['wall_s']:.1f} s | {r['cpu_s']:.1f} s | "
                      f"{r['rss_mb']:.0f} MB | {r['load']:.1f} | {bar} |", flush=True)
                if r["rc"] != 0:
                    print(r["stderr"][-2000:], file=sys.stderr)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process's own peak RSS, the floor of every figure above: {own:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
