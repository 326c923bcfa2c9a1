"""Benchmark the `pipeline` CLI against the local sandbox in fast mode; print figures against targets.

    python benchmarks/bench.py                      # all three phases, default sizes
    python benchmarks/bench.py --markdown           # the same, plus a Markdown table for the README
    python benchmarks/bench.py --items 2000 --concurrency 200 --processing-s 0.5 --poll-interval 0.1 \
        --plan-rows 100000
    python benchmarks/bench.py --only full          # one phase: full, plan, rerun, timing, example, render

Every figure is of a child process, measured from outside: the sandbox (`pipeline sandbox --fast`) runs
as its own process, and each `pipeline ...` command runs as another, reaped with os.wait4 so its CPU
time (user + sys) and peak RSS are its own, not the sandbox's nor this script's.

Phases:
1. full   `pipeline run CONFIG --quiet --json` over N items, C in flight, orders taking --processing-s.
          Wall time is compared with the lower bound N / C x (processing_s + poll_interval). Each item
          has its own image (64x64 JPEG by default; --image-size 1024 for a catalog's size, where the
          report's previews and the bigger transfers show), so every item pays for its upload: shared images
          are uploaded once per run, which would flatter CPU per item (--images K shares K images).
          Credits and requests come from the sandbox's ledger (GET {base_url}/__ledger). Then the
          same run with the five client calls stubbed in-process (no network): what the tool costs
          apart from HTTP. benchmarks/http_floor.py measures HTTP alone through bare aiohttp.
2. plan   `pipeline validate CONFIG` over a --plan-rows CSV whose rows share --plan-images images.
3. rerun  the same manifest with every item done and unchanged, then `pipeline run CONFIG --quiet
          --json`: it must make no API call (checked in the ledger). By default the done items are written
          with the library itself (output files, then checkpoint rows: validate, fingerprint,
          Checkpoint.insert), which takes seconds, and their outputs lack the AI-disclosure XMP: a first
          rerun writes it into each (0 credits; shown for reference), and the next is the no-op measured.
          --build run makes them with a real `pipeline run`
          against the sandbox (processing 0.01 s, concurrency 500), which took 8 minutes for 100k
          items on 2 cores: that first run is CPU-bound in the client at about 3.4 ms per item.
4. timing   orders whose avgResponseTimeInSec lies (bench_cases.TIMING_CASES).
5. example  LightX's sequential example flow (benchmarks/lightx_example.py) against `pipeline run`.
6. render   one sandbox picture of a 1000 px product, in its own process (the sandbox's painter).

The cases are bench_cases.py, the runner (child processes, the sandbox process, the table) bench_runner.py.

CPU per item includes interpreter start-up and imports; the "startup" row shows what those cost
alone (`python -c "import pipeline.cli, pipeline.run.engine, pipeline.inputs.validate"`). The sandbox's
maxRetriesAllowed is raised to cover processing_s / poll_interval with room to spare, so no order
outlives its polls. Other processes on the machine skew wall and CPU figures: the load average at the
start is printed when it is over 0.5.

Not part of the test suite: tests never assert timings. Needs only the project's own dependencies.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench_cases import (phase_example, phase_full, phase_plan, phase_render, phase_rerun, phase_startup,
                         phase_timing)
from bench_runner import Results, compile_bytecode, print_markdown, print_table
from wakeups import wake_cost_us


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=2000, help="items in the full run (default 2000)")
    p.add_argument("--concurrency", type=int, default=200, help="limits.concurrency of the full run")
    p.add_argument("--processing-s", type=float, default=0.5, help="sandbox processing time per order")
    p.add_argument("--latency-s", type=float, default=0.0,
                   help="seconds the sandbox adds to every response, as a far-away API would (default 0)")
    p.add_argument("--transfers", type=int, default=None,
                   help="limits.transfers of the full run (default: the config's default)")
    p.add_argument("--poll-interval", type=float, default=0.1, help="poll.interval_s of the full run")
    p.add_argument("--images", type=int, default=0,
                   help="distinct images in the full run (default 0: one per item)")
    p.add_argument("--image-size", type=int, default=64,
                   help="side of the full run's input JPEGs in px (default 64; a catalog's are 800-2000)")
    p.add_argument("--qa-off", action="store_true",
                   help="the same as --min-fidelity 0: no fidelity gate and no scoring (the engine alone)")
    p.add_argument("--min-fidelity", type=float, default=None,
                   help="qa.min_fidelity of the full run (default: the config's, 0.7; 0 turns the score off)")
    p.add_argument("--realistic", action="store_true",
                   help="the sandbox's outputs 1.25x larger, moved and at JPEG quality 85, as an independent "
                        "server's (--output-scale 1.25 --output-shift 0.03 --output-quality 85)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the full phase this many times and report the fastest (default 1)")
    p.add_argument("--plan-rows", type=int, default=100_000, help="rows of the plan / rerun manifest")
    p.add_argument("--plan-images", type=int, default=8, help="distinct images those rows share")
    p.add_argument("--timing-image-size", type=int, default=64,
                   help="side of the timing phase's input JPEGs in px (default 64; 640 for the CPU target)")
    p.add_argument("--only", choices=("full", "plan", "rerun", "timing", "example", "render"), action="append",
                   help="run only this phase (repeatable; rerun implies plan)")
    p.add_argument("--build", choices=("direct", "run"), default="direct",
                   help="how the rerun phase makes its done items: written with the library (seconds), "
                        "or by pipeline run against the sandbox (about 8 minutes for 100k on 2 cores)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds any one child may take")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, removed)")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    phases = set(args.only or ("full", "plan", "rerun", "timing", "example", "render"))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    res = Results()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        res.notes.append(f"load average was {load:.2f} at the start: other processes share the CPU, "
                         "so wall times may be high; rerun on an idle machine")
    compile_bytecode(res)
    try:
        startup_cpu = phase_startup(args, res)
        if "render" in phases:
            phase_render(args, res)
        if "full" in phases:
            phase_full(args, work, res, startup_cpu)
        if "timing" in phases:
            phase_timing(args, work, res)
        if "example" in phases:
            phase_example(args, work, res)
        if phases & {"plan", "rerun"}:
            big = phase_plan(args, work, res)
            if "rerun" in phases:
                phase_rerun(args, big, res)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    # CPU per item here grows with what a wake-up from idle costs the VM at the time (docs/performance.md)
    res.notes.append(f"a wake-up from 6 ms of idle cost {wake_cost_us(6.0):.0f} us of CPU just now "
                     "(benchmarks/wakeups.py; 70-180 us on the development VM): CPU figures move with it")
    print_table(res)
    if args.markdown:
        print_markdown(res, argv)
    return 0 if all(r.met is not False for r in res.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
