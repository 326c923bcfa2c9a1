"""The bench's cases, one phase each: startup, full run, plan, no-op rerun, order timing against a lying
hint, LightX's example flow, and the sandbox's picture. Each adds its figures to a Results; the runner
(bench_runner.py) measures the child processes."""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_runner import (REPO, SANDBOX_KEY, Results, Sandbox, _json_summary, _tail, child_env, make_images,
                          max_polls, pipeline_argv, run_child, total_requests, write_config, write_manifest)

# The same `pipeline run`, with the five client calls answered in-process at once: what the tool
# costs apart from HTTP (imports, validation, images, checkpoint, files, results, report).
_NO_NETWORK = """
import sys
from pipeline.lightx import client
made, uploaded, ordered = iter(range(1, 1 << 62)), {}, {}
async def upload_slot(self, size, content_type):
    n = next(made)
    return client.UploadSlot(put_url=f"http://stub/s3/{n}", image_url=f"http://stub/cdn/{n}")
async def put_image(self, put_url, data, content_type):
    uploaded[put_url.rsplit("/", 1)[1]] = data
async def submit(self, image_url, prompt):
    order_id = f"{next(made):032x}"
    ordered[order_id] = image_url.rsplit("/", 1)[1]
    return client.Order(order_id=order_id, max_retries=5, status="init")
async def order_status(self, order_id):
    return client.OrderStatus(status="active", output=f"http://stub/output/{order_id}.jpg")
async def download(self, url, max_bytes=0):  # the uploaded picture itself, as the sandbox's fast mode
    return uploaded[ordered[url.rsplit("/", 1)[1].split(".")[0]]]
for stub in (upload_slot, put_image, submit, order_status, download):
    setattr(client.Client, stub.__name__, stub)
import pipeline.cli as cli
sys.exit(cli.entry() if hasattr(cli, "entry") else cli.main(sys.argv[1:]))
"""



def phase_startup(args: argparse.Namespace, res: Results) -> float:
    """CPU seconds of interpreter start-up plus the imports a run needs."""
    run = run_child([sys.executable, "-c", "import pipeline.cli, pipeline.run.engine, pipeline.inputs.validate"],
                    env=child_env(), cwd=REPO, timeout_s=120).check("import pipeline")
    res.add("startup: python + imports (CPU / wall)", f"{run.cpu_s * 1000:.0f} ms / {run.wall_s * 1000:.0f} ms")
    return run.cpu_s


def phase_full(args: argparse.Namespace, work: Path, res: Results, startup_cpu: float) -> None:
    n, c, proc_s, poll_s = args.items, args.concurrency, args.processing_s, args.poll_interval
    root = work / "full"
    distinct = args.images or n
    images = make_images(root / "images", distinct, size=args.image_size)
    write_manifest(root / "catalog.csv", n, images)
    print(f"[full] {n} items, {distinct} distinct {args.image_size} px images, concurrency {c}, processing {proc_s} s, "
          f"poll every {poll_s} s", file=sys.stderr)
    min_fidelity = 0.0 if args.qa_off else args.min_fidelity
    realistic = {"output_scale": 1.25, "output_shift": 0.03, "output_quality": 85} if args.realistic else {}
    with Sandbox(processing_s=proc_s, max_retries_allowed=max_polls(proc_s, poll_s), seed=0,
                 latency_s=args.latency_s, **realistic) as sb:
        def trial_config(out: str) -> Path:
            return write_config(root, base_url=sb.base_url, concurrency=c, poll_interval=poll_s,
                                transfers=args.transfers, min_fidelity=min_fidelity, out=out, name=f"config-{out}.yaml")
        config = write_config(root, base_url=sb.base_url, concurrency=c, poll_interval=poll_s,
                              transfers=args.transfers, min_fidelity=min_fidelity)
        _clear_outputs(root)
        trials = []
        for k in range(args.repeat):
            # Each trial starts from nothing done, in an output dir of its own: removing the last
            # trial's 1,000 files just before would bill this one for them. ext4 without a journal
            # (this VM's disk) passes over every inode freed in the last 5 s (300 s while its block is
            # unwritten) on each create, about 0.4 ms of kernel CPU per file after such a removal.
            sb.reset()
            trial = run_child(pipeline_argv("run", str(trial_config(f"out-{k}")), "--quiet", "--json"),
                              env=child_env(), cwd=root, timeout_s=args.timeout).check("pipeline run")
            trials.append((trial, sb.ledger()))
        sandbox_cpu = sb.stop() / args.repeat
        launcher = sb.launcher
    run, ledger = min(trials, key=lambda t: t[0].wall_s)
    if args.repeat > 1:
        res.notes.append(f"full run: best of {args.repeat} by wall time; walls "
                         + ", ".join(f"{t.wall_s:.2f}" for t, _ in trials) + " s; CPU "
                         + ", ".join(f"{t.cpu_s:.2f}" for t, _ in trials) + " s")
    summary = _json_summary(run.stdout)
    done = summary.get("counts", {}).get("done")
    bound = n / c * (proc_s + poll_s)
    ratio = run.wall_s / bound
    requests = total_requests(ledger)
    credits = ledger.get("credits")
    res.notes.append(f"sandbox started with: {launcher}")
    res.add(f"full run wall (N={n}, C={c}, {proc_s} s processing, {poll_s} s polls)",
            f"{run.wall_s:.2f} s = {ratio:.3f} x bound {bound:.2f} s", "<= 1.15 x bound", ratio <= 1.15)
    if "elapsed_s" in summary:
        inner = summary["elapsed_s"]
        res.add("  engine time, excluding start-up and config load", f"{inner:.2f} s = {inner / bound:.3f} x bound")
    # #21's 2.5 ms is the client's own work per item: the `pipeline` process. The fidelity workers'
    # score has its own budget, #22's 25 ms of CPU per 1024 px picture (ten times #21's bar: the two
    # issues agree only if #21's does not count them). Both are shown, and the whole tree beside them.
    cpu = _cpu_split(summary)
    process_s = cpu["process"] if cpu else run.cpu_s
    res.add("client CPU per item, the pipeline process (#21 §5)", f"{process_s / n * 1000:.2f} ms",
            "<= 2.5 ms (#21)", process_s / n * 1000 <= 2.5)
    if cpu and cpu["workers"]:
        res.add("  fidelity workers per item scored (start-ups included)", f"{cpu['workers'] / n * 1000:.2f} ms",
                "<= 25 ms (#22)", cpu["workers"] / n * 1000 <= 25)
    res.add("  the whole process tree, workers included", f"{run.cpu_s / n * 1000:.2f} ms "
            f"(user {run.user_s:.2f} s + sys {run.sys_s:.2f} s)")
    res.add("  ... less start-up and imports", f"{max(0.0, run.cpu_s - startup_cpu) / n * 1000:.2f} ms")
    res.add("client peak RSS (full run)", f"{run.max_rss_mb:.0f} MB")
    res.add("requests per second (all routes)", f"{requests / run.wall_s:.0f} /s "
            f"({requests} requests, {requests / n:.2f} per item: {_per_route(ledger)})")
    res.add("credits charged", f"{credits} (items done: {done})", f"= {n}", credits == n and done == n)
    offline_cpu = []
    for k in range(args.repeat):
        offline = run_child([sys.executable, "-c", _NO_NETWORK, "run", str(trial_config(f"out-stubbed-{k}")),
                             "--quiet", "--json"],
                            env=child_env(), cwd=root, timeout_s=args.timeout).check("pipeline run (API calls stubbed)")
        offline_cpu.append(offline.cpu_s)
    least = min(offline_cpu)  # compared with the least CPU of the real runs: both are the quietest seen
    res.add("  client CPU per item with the 5 API calls stubbed in-process (all but HTTP)",
            f"{least / n * 1000:.2f} ms (whole process tree); so HTTP costs "
            f"{max(0.0, min(t.cpu_s for t, _ in trials) - least) / requests * 1000:.2f} ms per request")
    res.add("sandbox CPU per run (its own process, for reference)", f"{sandbox_cpu:.2f} s")


def _cpu_split(summary: dict) -> dict | None:
    """`run --json`'s CPU split ({"process": s, "workers": s}), or None from a run that gives none."""
    cpu = summary.get("cpu_s")
    return cpu if isinstance(cpu, dict) else None


def _clear_outputs(root: Path) -> None:
    """The output dirs an earlier bench left in a kept work dir (--keep)."""
    for old in [root / "out", *root.glob("out-*")]:
        shutil.rmtree(old, ignore_errors=True)


def _per_route(ledger: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(ledger.get("requests", {}).items()))


def phase_plan(args: argparse.Namespace, work: Path, res: Results) -> Path:
    root = work / "big"
    images = make_images(root / "images", args.plan_images)
    write_manifest(root / "catalog.csv", args.plan_rows, images)
    # The URL is a placeholder until the rerun phase points the config at its sandbox.
    config = write_config(root, base_url="http://127.0.0.1:9/external/api", concurrency=500,
                          poll_interval=0.01)
    print(f"[plan] pipeline validate over {args.plan_rows} rows, {args.plan_images} images", file=sys.stderr)
    run = run_child(pipeline_argv("validate", str(config)), env=child_env(), cwd=root,
                    timeout_s=args.timeout).check("pipeline validate")
    rows = f"{args.plan_rows // 1000}k" if args.plan_rows % 1000 == 0 else str(args.plan_rows)
    res.add(f"{rows}-row plan (validate) wall", f"{run.wall_s:.2f} s (CPU {run.cpu_s:.2f} s)", "<= 10 s",
            run.wall_s <= 10)
    res.add(f"{rows}-row plan (validate) peak RSS", f"{run.max_rss_mb:.0f} MB", "<= 500 MB",
            run.max_rss_mb <= 500)
    return root


def build_done_checkpoint(config: Path) -> None:
    """Write every item as done, as a finished run would: one output file each, then checkpoint rows.

    Uses the library's own validate, fingerprint and checkpoint; if the engine changes what it
    trusts, the rerun makes API calls and the benchmark says so (then use --build run).
    """
    from pipeline.store.checkpoint import Checkpoint, Row
    from pipeline.store.lock import RunLock
    from pipeline.plan.planner import fingerprint
    from pipeline.plan.sources import hash_local_images
    from pipeline.sandbox.painter import fast_jpeg
    from pipeline.inputs.validate import validate

    cfg, manifest, _ = validate(config, env={})
    jpeg = fast_jpeg()
    digest = hashlib.sha256(jpeg).hexdigest()
    api = cfg.api.base_url  # what a run against a real endpoint records as api id (its kind is "lightx")
    cfg.output.dir.mkdir(parents=True, exist_ok=True)
    with RunLock(cfg.state_dir):
        ckpt = Checkpoint.open(cfg.state_dir / "checkpoint.sqlite")
        try:
            shas, problems = hash_local_images(manifest.items, ckpt)
            if problems:
                sys.exit(f"bench: unreadable images: {list(problems.values())[:3]}")
            now = time.time()
            root_url = api.rsplit("/external/api", 1)[0]
            rows: list[Row] = []
            for n, item in enumerate(manifest.items):
                target = cfg.output.dir / item.output_name
                target.write_bytes(jpeg)
                st = target.stat()
                sha = shas[str(item.image_path)]
                order = f"{n:032x}"  # the fields a real run fills, so results.csv is as wide
                rows.append(Row(id=item.id, fingerprint=fingerprint(sha, item.prompt, "lightx"), state="done",
                                image_sha256=sha, api_id=api, image_url=f"{root_url}/cdn/apikey/{sha[:32]}.jpeg",
                                uploaded_at=now, order_id=order, max_polls=5,
                                output_url=f"{root_url}/output/{order}.jpg", output_path=item.output_name,
                                output_sha256=digest, output_size=st.st_size, output_mtime_ns=st.st_mtime_ns,
                                attempts=1, credits=1, submitted_at=now, finished_at=now))
                if len(rows) == 50_000:  # a million rows are never all held (benchmarks/scale.py)
                    ckpt.insert(rows)
                    rows = []
            ckpt.insert(rows)
        finally:
            ckpt.close()


def phase_rerun(args: argparse.Namespace, root: Path, res: Results) -> None:
    rows = f"{args.plan_rows // 1000}k" if args.plan_rows % 1000 == 0 else str(args.plan_rows)
    build_proc, build_poll, build_c = 0.01, 0.01, 500
    with Sandbox(processing_s=build_proc, max_retries_allowed=max_polls(build_proc, build_poll), seed=0) as sb:
        config = write_config(root, base_url=sb.base_url, concurrency=build_c, poll_interval=build_poll)
        (root / "out").mkdir(exist_ok=True)
        started = time.perf_counter()
        if args.build == "run":
            print(f"[rerun] building {args.plan_rows} done items with pipeline run (concurrency {build_c}, "
                  f"processing {build_proc} s)", file=sys.stderr)
            build = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(),
                              cwd=root, timeout_s=args.timeout).check("pipeline run (building the checkpoint)")
            done = _json_summary(build.stdout).get("counts", {}).get("done")
            if done != args.plan_rows:
                sys.exit(f"bench: the build run finished {done} of {args.plan_rows} items\n{_tail(build.stdout)}")
            res.add(f"  building {rows} done items with pipeline run (for reference)",
                    f"{build.wall_s:.1f} s, CPU {build.cpu_s / args.plan_rows * 1000:.2f} ms/item, "
                    f"RSS {build.max_rss_mb:.0f} MB")
        else:
            print(f"[rerun] writing {args.plan_rows} done items directly (outputs + checkpoint)", file=sys.stderr)
            build_done_checkpoint(config)
            res.notes.append(f"{rows} done items written directly with the library in "
                             f"{time.perf_counter() - started:.1f} s (--build run makes them with pipeline run)")
            # What a finished run leaves besides the checkpoint (results, report, thumbnail cache).
            report = run_child(pipeline_argv("report", str(config)), env=child_env(), cwd=root,
                               timeout_s=args.timeout)
            if report.returncode == 0:
                res.add(f"  first `pipeline report` over {rows} done items (for reference)",
                        f"{report.wall_s:.1f} s (CPU {report.cpu_s:.1f} s), RSS {report.max_rss_mb:.0f} MB")
            elif "invalid choice" not in report.stderr:
                report.check("pipeline report")
            # The directly written outputs carry no AI-disclosure XMP yet: the first rerun writes it into
            # every one and records it (0 credits, no API call). That is a repair, not a no-op; the
            # next rerun is the no-op measured below (as benchmarks/scale.py's --repeat does).
            sb.reset()
            first = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(), cwd=root,
                              timeout_s=args.timeout).check("pipeline run (disclosure pass)")
            res.add(f"  first rerun after the direct build: the disclosure XMP written into {rows} outputs",
                    f"{first.wall_s:.1f} s (CPU {first.cpu_s:.1f} s), {total_requests(sb.ledger())} API calls, "
                    f"RSS {first.max_rss_mb:.0f} MB")
        sb.reset()
        print("[rerun] no-op rerun", file=sys.stderr)
        run = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(), cwd=root,
                        timeout_s=args.timeout).check("pipeline run (no-op rerun)")
        calls = total_requests(sb.ledger())
    summary = _json_summary(run.stdout)
    done = summary.get("counts", {}).get("done")
    if args.build == "direct" and (calls or done != args.plan_rows):
        res.notes.append("the directly written checkpoint was not trusted by this engine "
                         f"({calls} API calls, {done} done): rerun with --build run")
    res.add(f"{rows} no-op rerun wall", f"{run.wall_s:.2f} s (CPU {run.cpu_s:.2f} s)", "<= 10 s",
            run.wall_s <= 10)
    res.add(f"{rows} no-op rerun peak RSS", f"{run.max_rss_mb:.0f} MB")
    res.add(f"{rows} no-op rerun API calls", f"{calls} (items done: {done})", "0", calls == 0 and done == args.plan_rows)


# -- order timing against a lying hint ------------------------------------------------------------

@dataclass(frozen=True)
class TimingCase:
    """A sandbox whose avgResponseTimeInSec (hint) is not what its orders take (processing +- jitter)."""

    name: str
    items: int
    concurrency: int
    processing_s: float
    jitter: float
    hint_s: float
    interval_s: float


TIMING_CASES = (
    TimingCase("hint 30x too high", 1000, 100, 0.5, 0.3, 15.0, 0.25),   # LightX's 15 s, 0.35-0.65 s orders
    TimingCase("hint 3x too low", 320, 32, 1.5, 0.1, 0.5, 0.15),
    TimingCase("slow orders (10-30 s / 5)", 320, 32, 4.0, 0.5, 3.0, 0.6),  # 2-6 s, checks >= 0.6 s apart
)


def phase_timing(args: argparse.Namespace, work: Path, res: Results) -> None:
    """Each TimingCase with LightX's 5 allowed checks: wall against N / C x (mean + interval), orders
    collected in the first run, checks beyond the allowance, credits; then an immediate rerun."""
    for case in TIMING_CASES:
        root = work / "timing" / "".join(c if c.isalnum() else "-" for c in case.name)
        images = make_images(root / "images", case.items, size=args.timing_image_size)
        write_manifest(root / "catalog.csv", case.items, images)
        print(f"[timing] {case.name}: {case.items} items, C={case.concurrency}, orders {case.processing_s} s "
              f"+-{case.jitter:.0%}, hint {case.hint_s} s, checks >= {case.interval_s} s apart", file=sys.stderr)
        with Sandbox(processing_s=case.processing_s, processing_jitter=case.jitter, seed=1,
                     avg_response_time_s=case.hint_s) as sb:
            config = write_config(root, base_url=sb.base_url, concurrency=case.concurrency,
                                  poll_interval=case.interval_s)
            run = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(), cwd=root,
                            timeout_s=args.timeout)
            if run.returncode not in (0, 1):
                run.check("pipeline run")
            first = sb.ledger()
            rerun = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(), cwd=root,
                              timeout_s=args.timeout)
            second = sb.ledger()
        done = _json_summary(run.stdout).get("counts", {}).get("done", 0)
        bound = case.items / case.concurrency * (case.processing_s + case.interval_s)
        ratio = run.wall_s / bound
        checks = first["requests"].get("status", 0)
        res.add(f"{case.name}: wall (N={case.items}, C={case.concurrency})",
                f"{run.wall_s:.2f} s = {ratio:.2f} x bound {bound:.2f} s", "<= 1.3 x bound", ratio <= 1.3)
        res.add("  collected in the first run", f"{done} of {case.items} ({done / case.items:.1%}); "
                f"{checks / case.items:.2f} checks per item, most per order "
                f"{first.get('max_polls_per_order', '?')}", ">= 99 %", done >= 0.99 * case.items)
        res.add("  checks beyond the allowance of 5", str(first["overpolls"]), "0", first["overpolls"] == 0)
        parked = case.items - done
        before, after = first.get("polls_per_order", {}), second.get("polls_per_order", {})
        extra = [after.get(o, 0) - before.get(o, 0) for o in before if after.get(o, 0) != before.get(o, 0)]
        res.add("  immediate rerun: checks per parked order", f"{max(extra, default=0)} (parked {parked}, rerun "
                f"exit {rerun.returncode})", "<= 1", max(extra, default=0) <= 1)
        res.add("  credits charged", f"{second['credits']} for {case.items} items", f"= {case.items}",
                second["credits"] == case.items)
        cpu = _cpu_split(_json_summary(run.stdout))
        process_ms = (cpu["process"] if cpu else run.cpu_s) / case.items * 1000
        res.add("  client CPU per item, the pipeline process (whole tree)",
                f"{process_ms:.2f} ms ({run.cpu_s / case.items * 1000:.2f} ms)",
                "<= 2.5 ms" if case.items >= 1000 else "", process_ms <= 2.5 if case.items >= 1000 else None)


def phase_example(args: argparse.Namespace, work: Path, res: Results) -> None:
    """30 items with 1 s orders and LightX's 15 s hint: LightX's sequential example flow
    (benchmarks/lightx_example.py) against `pipeline run` at concurrency 16, both checking at most every
    `interval` seconds, for LightX's 3 s and for 1 s."""
    root = work / "example"
    images = make_images(root / "images", 30)
    write_manifest(root / "catalog.csv", 30, images)
    for interval in (3.0, 1.0):
        with Sandbox(processing_s=1.0, processing_jitter=0.2, seed=2, avg_response_time_s=15) as sb:
            example = run_child([sys.executable, str(REPO / "benchmarks" / "lightx_example.py"), sb.base_url,
                                 SANDBOX_KEY, *[str(root / name) for name in images], "--interval", str(interval)],
                                env=child_env(), cwd=root, timeout_s=args.timeout).check("lightx_example.py")
            config = write_config(root, base_url=sb.base_url, concurrency=16, poll_interval=interval)
            shutil.rmtree(root / "out", ignore_errors=True)
            ours = run_child(pipeline_argv("run", str(config), "--quiet", "--json"), env=child_env(), cwd=root,
                             timeout_s=args.timeout).check("pipeline run")
        speedup = example.wall_s / ours.wall_s
        res.add(f"30 items, 1 s orders, hint 15 s, checks >= {interval:g} s apart: LightX's sequential flow "
                "vs pipeline run (C=16)", f"{example.wall_s:.1f} s vs {ours.wall_s:.2f} s = {speedup:.1f}x faster",
                ">= 10x", speedup >= 10)



# The sandbox paints every output a newcomer sees first; a 1000 px picture must not keep them waiting.
_RENDER = """
import io, sys, time
from PIL import Image, ImageDraw
from pipeline.sandbox import painter
img = Image.new("RGB", (1000, 1000), (255, 255, 255))
ImageDraw.Draw(img).rectangle([300, 350, 620, 750], fill=(200, 30, 35))
buffer = io.BytesIO()
img.save(buffer, "JPEG", quality=92)
started = time.perf_counter()
painter.render(buffer.getvalue(), "on a white marble counter, soft morning light")
print(time.perf_counter() - started)
"""


def phase_render(args: argparse.Namespace, res: Results) -> None:
    """The sandbox's picture of a 1000x1000 px product (not fast mode): seconds of one render."""
    run = run_child([sys.executable, "-c", _RENDER], env=child_env(), cwd=REPO,
                    timeout_s=args.timeout).check("sandbox render")
    took = float(run.stdout.strip().splitlines()[-1])
    res.add("sandbox picture, 1000x1000 px (one render)", f"{took:.2f} s", "<= 2 s", took <= 2.0)
