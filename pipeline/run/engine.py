"""Run a validated catalog: plan, then drive every item through the stages with bounded concurrency.

    result = run(cfg, manifest, RunOptions(sandbox=True))
    result.exit_code   # 0 all done, 1 failures or unfinished, 130 interrupted
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

import aiohttp

from pipeline.outputs import results
from pipeline.store.checkpoint import Checkpoint
from pipeline.lightx.client import Client
from pipeline.inputs.config import RunConfig
from pipeline.errors import (ApiUnreachable, AuthError, CheckpointError, ConfigError, FatalApiError, ItemError,
                             OutputError, PipelineError, Stopped, WrongApi)
from pipeline.plan.fetch import FetchError, fetch_image
from pipeline.media.images import ImageError
from pipeline.store.lock import RunLock
from pipeline.inputs.manifest import Item, Manifest
from pipeline.lightx.pacing import Pacer
from pipeline.plan.planner import Plan, failed_rows, hash_local_images, plan
from pipeline.run.progress import Progress
from pipeline.outputs.report import write_report
from pipeline.run.stages import ORDER_STAGES, STAGES, Context, Job, Parked
from pipeline.run.timing import WINDOW, OrderTimes
from pipeline.store.atomic import remove_stale_temps, write_atomically
from pipeline.run.states import State

ITEM_FAILURES = (ItemError, FetchError, ImageError)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    sandbox: bool = False
    skip_invalid: bool = False
    force: bool = False
    only: frozenset[str] = frozenset()
    dry_run: bool = False
    quiet: bool = False
    progress: bool | None = None        # None: a bar only when stderr is a TTY
    confirm: Callable[[int], bool] | None = None  # asked before spending over budget.confirm_over
    sandbox_options: object | None = None


@dataclass
class RunResult:
    exit_code: int
    counts: Counter                     # done / failed / pending over the current manifest
    credits: int = 0                    # orders seen completing this run
    submits: int = 0
    elapsed_s: float = 0.0
    message: str | None = None          # why the run stopped early, if it did
    plan: Plan | None = None
    results_path: Path | None = None
    extra: dict = field(default_factory=dict)


def run(cfg: RunConfig, manifest: Manifest, options: RunOptions, *, key: str | None) -> RunResult:
    """Plan and run under the checkpoint lock; rewrites results.csv however the run ends."""
    if manifest.invalid and not options.skip_invalid:
        raise ConfigError([line for bad in manifest.invalid for line in bad.problems])
    if not key and not options.sandbox and not options.dry_run:
        raise ConfigError(f"no API key: set {cfg.api.key_env} in the environment, or use --sandbox")
    with RunLock(cfg.state_dir):
        remove_stale_temps(_written_dirs(cfg, manifest))
        ckpt = Checkpoint.open(cfg.checkpoint_path)
        try:
            return asyncio.run(_run(cfg, manifest, options, key, ckpt))
        finally:
            ckpt.close()


def _written_dirs(cfg: RunConfig, manifest: Manifest) -> set[Path]:
    """Every directory a run writes files into atomically (outputs, previews, fetched sources)."""
    out = cfg.output.dir
    dirs = {out, out / "thumbs", cfg.state_dir, cfg.state_dir / "sources", cfg.state_dir / "remote-cache"}
    dirs.update((out / item.output_name).parent for item in manifest.items if "/" in item.output_name)
    return dirs


async def _run(cfg: RunConfig, manifest: Manifest, options: RunOptions, key: str | None,
               ckpt: Checkpoint) -> RunResult:
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=max(100, cfg.limits.workers * 2), ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session, \
            _api_endpoint(cfg, options, key) as (base_url, api_key, api_kind, api_id):
        shas, problems = await _hash_sources(cfg, manifest.items, ckpt, session)
        items = [i for i in manifest.items if i.id not in problems]
        rows = ckpt.rows()
        the_plan = plan(items, rows, shas, output_dir=cfg.output.dir, api_kind=api_kind, api_id=api_id,
                        force=options.force, only=options.only, sandbox=options.sandbox,
                        legacy_kind=None if options.sandbox else cfg.api.base_url)
        if options.dry_run:
            return RunResult(exit_code=0, counts=Counter(), plan=the_plan)
        reasons = [(b.id, "; ".join(b.problems)) for b in manifest.invalid]
        reasons += [(item_id, reason) for item_id, reason in problems.items()]
        bad = failed_rows(reasons, {i.id for i in items}, rows)
        ckpt.insert(the_plan.writes + bad)

        budget = cfg.budget.max_credits
        if options.confirm and the_plan.credits_needed > cfg.budget.confirm_over:
            if not options.confirm(the_plan.credits_needed):
                raise PipelineError(f"not confirmed: this run needs up to {the_plan.credits_needed} "
                                    "credits; nothing was spent (pass --yes to skip the question)")
        client = Client(session, base_url, api_key, retries=cfg.retries,
                        pacer=Pacer(cfg.limits.requests_per_second), timeout_s=cfg.api.timeout_s)
        ckpt.trim_order_times()
        times = OrderTimes(concurrency=cfg.limits.concurrency, history=ckpt.order_times(api_kind, WINDOW))
        ctx = Context(cfg=cfg, client=client, ckpt=ckpt, session=session, api_id=api_id,
                      source_dir=cfg.state_dir / "sources", budget=budget,
                      order_slots=asyncio.Semaphore(cfg.limits.concurrency), times=times, api_kind=api_kind)
        jobs = [Job(item, row) for item, row in the_plan.jobs]
        # The results table needs pyarrow at the end; importing it now costs the run no wall time.
        threading.Thread(target=results.prewarm, name="prewarm", daemon=True).start()
        fatal: PipelineError | None = None
        try:
            interrupted = await _drive_all(ctx, jobs, options)
        except PipelineError as exc:  # key rejected, checkpoint or output dir unusable
            fatal, interrupted = exc, False
        with contextlib.suppress(CheckpointError):
            ckpt.flush()
        # save() kept these objects current: no need to read 100k rows back from SQLite.
        rows.update((row.id, row) for row in the_plan.writes + bad)
    counts = results.status_counts(manifest, rows)
    try:
        results_path = write_outputs(cfg, manifest, rows, elapsed_s=time.monotonic() - started)
    except (OutputError, CheckpointError):
        if fatal is None:
            raise
        results_path = None  # the disk that failed the run cannot take the table either
    if fatal is not None:
        raise fatal
    exit_code = 130 if interrupted else (0 if counts["done"] == sum(counts.values()) else 1)
    message = "interrupted: stopped new work, progress saved" if interrupted else ctx.stop_reason
    return RunResult(exit_code=exit_code, counts=counts, credits=ctx.credits, submits=ctx.submits,
                     elapsed_s=time.monotonic() - started, message=message, plan=the_plan,
                     results_path=results_path, extra={"requests": client.requests})


def write_outputs(cfg: RunConfig, manifest: Manifest, rows: dict, *, elapsed_s: float | None = None,
                  force: bool = False) -> Path:
    """results.csv, results.parquet, then report.html (which links to them); returns the CSV path."""
    path = results.write(cfg, manifest, rows, force=force)
    write_report(cfg, manifest, rows, summary={"elapsed_s": elapsed_s} if elapsed_s is not None else None)
    return path


def rebuild_outputs(config_path: str | Path) -> Path:
    """`pipeline report`: rewrite the table and report from the checkpoint alone; no API call."""
    from pipeline.inputs.validate import validate
    cfg, manifest, _ = validate(config_path, check_images=False)
    path = cfg.checkpoint_path
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: nothing has run yet")
    with RunLock(cfg.state_dir):
        ckpt = Checkpoint.open(path)
        try:
            rows = ckpt.rows()
        finally:
            ckpt.close()
        write_outputs(cfg, manifest, rows, force=True)
    return cfg.output.dir / "report.html"


async def _drive_all(ctx: Context, jobs: list[Job], options: RunOptions) -> bool:
    """Run `jobs`, limits.concurrency orders and limits.transfers more items at once; True if interrupted."""
    loop = asyncio.get_running_loop()
    queue = iter(jobs)
    ctx.not_started = len(jobs)
    fatal: list[PipelineError] = []
    progress = Progress(total=len(jobs), ctx=ctx, enabled=options.progress, quiet=options.quiet)

    async def worker() -> None:
        for job in queue:
            ctx.not_started -= 1
            if fatal:
                return
            await _drive(ctx, job, fatal)
            progress.finished(job.row.state)
            if fatal:  # nothing more can be written or sent: stop the others (submits finish, shielded)
                for other in workers:
                    if other is not asyncio.current_task():
                        other.cancel()
                return

    workers = [asyncio.ensure_future(worker()) for _ in range(min(ctx.cfg.limits.workers, len(jobs)) or 1)]
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        ctx.stop_submits("interrupted")
        ctx.client.stop()
        for task in ctx.critical:  # a submit waiting (backoff, Retry-After, the first-call gate) sent nothing
            if not ctx.client.sending(task):
                task.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)  # a second Ctrl-C aborts at once
        for w in workers:
            w.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
    try:
        progress.start()
        await asyncio.gather(*workers, return_exceptions=True)
        # Orders already sent must have their ids written down before we leave.
        while ctx.critical:
            await asyncio.gather(*list(ctx.critical), return_exceptions=True)
    finally:
        progress.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    if fatal:
        raise fatal[0]
    return interrupted


async def _drive(ctx: Context, job: Job, fatal: list[PipelineError]) -> None:
    """Take one item as far as it can go; the per-item boundary where failures become data."""
    row = job.row
    slot = False  # holds one of ctx.order_slots while the order is at the API (submit, poll)
    try:
        while row.state in STAGES:
            name, stage = STAGES[row.state]
            if (name in ORDER_STAGES) != slot:
                if slot:
                    ctx.order_slots.release()
                    slot = False
                else:
                    ctx.in_stage["ready"] += 1  # uploaded, waiting for an order slot
                    try:
                        await ctx.order_slots.acquire()
                    finally:
                        ctx.in_stage["ready"] -= 1
                    slot = True
            ctx.in_stage[name] += 1
            try:
                await stage(ctx, job)
            finally:
                ctx.in_stage[name] -= 1
    except (Parked, Stopped) as exc:
        ctx.ckpt.save(row, error=str(exc))
    except ITEM_FAILURES as exc:
        ctx.ckpt.save(row, state=State.FAILED, error=str(exc), finished_at=time.time())
    except FatalApiError as exc:
        ctx.stop_submits(str(exc))
        if isinstance(exc, (AuthError, ApiUnreachable, WrongApi)):
            fatal.append(exc)
    except (CheckpointError, OutputError) as exc:
        ctx.stop_submits(str(exc))
        fatal.append(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the per-item boundary: a bug fails one item, not the run
        log.exception("internal error on item %s", row.id)  # the traceback, for whoever diagnoses it
        ctx.ckpt.save(row, state=State.FAILED, error=f"internal error: {type(exc).__name__}: {exc}",
                      finished_at=time.time())
    finally:
        if slot:
            ctx.order_slots.release()


async def _hash_sources(cfg: RunConfig, items: list[Item], ckpt: Checkpoint,
                        session: aiohttp.ClientSession) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 of every item's source bytes, by item id; remote images are fetched (cached) first."""
    by_path, problems = await asyncio.to_thread(hash_local_images, items, ckpt)
    shas = {i.id: by_path[str(i.image_path)] for i in items
            if i.image_path is not None and i.id not in problems}
    remote = [i for i in items if i.image_url]
    if remote:
        source_dir = cfg.state_dir / "sources"
        source_dir.mkdir(parents=True, exist_ok=True)
        gate = asyncio.Semaphore(min(16, cfg.limits.concurrency))
        cache: dict[str, asyncio.Task] = {}

        async def fetch(url: str) -> str:
            async with gate:
                got = await fetch_image(session, url, cfg.state_dir / "remote-cache",
                                        timeout_s=cfg.images.remote_timeout_s,
                                        max_bytes=cfg.images.remote_max_bytes)
            sha = hashlib.sha256(got.data).hexdigest()
            target = source_dir / sha
            if not target.exists():
                await asyncio.to_thread(write_atomically, target, got.data)
            return sha

        for item in remote:
            if item.image_url not in cache:
                cache[item.image_url] = asyncio.ensure_future(fetch(item.image_url))
        await asyncio.gather(*cache.values(), return_exceptions=True)
        for item in remote:
            task = cache[item.image_url]
            if task.exception() is None:
                shas[item.id] = task.result()
            elif isinstance(task.exception(), FetchError):
                problems[item.id] = f"cannot fetch image {item.image_url}: {task.exception()}"
            else:
                raise task.exception()
    return shas, problems


@contextlib.asynccontextmanager
async def _api_endpoint(cfg: RunConfig, options: RunOptions,
                        key: str | None) -> AsyncIterator[tuple[str, str, str, str]]:
    """Yield (base_url, key, api_kind, api_id); with --sandbox, a private sandbox on loopback.

    api_kind ("lightx" or "sandbox") is part of an item's identity, the URL is not: another spelling
    of the same API, or a proxy in front of it, must not buy a done catalog again. api_id is the
    instance that uploads and orders belong to."""
    if not options.sandbox:
        yield cfg.api.base_url, key or "", "lightx", cfg.api.base_url
        return
    from pipeline.sandbox import SANDBOX_KEY, SandboxOptions, start_sandbox
    running = await start_sandbox(options.sandbox_options or SandboxOptions())
    try:
        yield running.base_url, SANDBOX_KEY, "sandbox", f"sandbox@{running.port}"
    finally:
        await running.close()
