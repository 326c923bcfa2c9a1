"""Run a validated catalog in three steps: prepare, execute, finish.

    result = run(cfg, manifest, RunOptions(sandbox=True), key=None)
    result.exit_code   # 0 all done, 1 failures or unfinished, 130 interrupted

- prepare, before any event loop: the lock, the checkpoint, the plan (`plan/make.py`: sources,
  siblings, adoption, decisions), its rows written, the confirmation question;
- execute, on one event loop: every unit of the plan through the stages (`run/drive.py`);
- finish: steps/ files no row names removed; results table and report, however the run ended
  (`pipeline.outputs.publish`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

from pipeline.errors import CheckpointError, ConfigError, OutputError, PipelineError
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Manifest
from pipeline.inputs.validate import Overview
from pipeline.lightx.client import Client
from pipeline.lightx.pacing import Pacer
from pipeline.lightx.wire import Wire
from pipeline.outputs import publish, results
from pipeline.plan.make import make_plan
from pipeline.run.collector import long_lived
from pipeline.plan.planner import Plan
from pipeline.plan.steps import Where
from pipeline.run import disclose, loop, qa
from pipeline.run.derive import derive
from pipeline.run.budget import Budget
from pipeline.run.drive import drive_all
from pipeline.run.stages import Context, outbox
from pipeline.run.timing import WINDOW, OrderTimes
from pipeline.store.atomic import remove_stale_temps
from pipeline.store import steps_dir
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.store.lock import RunLock
from pipeline.store.remote import Remote, StorageBusy
from pipeline.store.runlog import run_log
from pipeline.version import installed_version

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
    results_path: Path | str | None = None  # a str: its storage URL
    extra: dict = field(default_factory=dict)
    overview: Overview | None = None    # the manifest as validated (counts, problems); `pipeline.run` sets it


@dataclass(frozen=True)
class Endpoint:
    """Where this run's orders go. `kind` ("lightx" or "sandbox") is part of an item's identity, the
    URL is not: another spelling of the same API, or a proxy in front of it, must not buy a done
    catalog again. `id` is the instance that uploads and orders belong to."""

    base_url: str
    key: str
    kind: str
    id: str
    sandbox_socket: socket.socket | None = None  # bound now; the sandbox serves on it in execute


@dataclass
class Prepared:
    """Everything `execute` needs, decided before its event loop starts."""

    cfg: RunConfig
    manifest: Manifest
    options: RunOptions
    ckpt: Checkpoint
    endpoint: Endpoint
    plan: Plan
    rows: dict[str, Row]                # the checkpoint's rows, kept current by save()
    started: float                      # time.monotonic() at the start, less the confirmation's wait
    outputs: Remote | None = None       # output.dir as a storage URL
    discloser: disclose.Discloser | None = None


@dataclass
class Executed:
    interrupted: bool
    fatal: PipelineError | None
    credits: int
    submits: int
    stop_reason: str | None
    requests: int


def run(cfg: RunConfig, manifest: Manifest, options: RunOptions, *, key: str | None) -> RunResult:
    """Plan and run under the checkpoint lock; rewrites results.csv however the run ends."""
    if manifest.invalid and not options.skip_invalid:
        raise ConfigError([line for bad in manifest.invalid for line in bad.problems]
                          + ["nothing was sent; fix these or pass --skip-invalid"])
    if unknown := sorted(options.only - {i.id for i in manifest.items}):
        raise ConfigError(f"--only: no such item id in the manifest: {', '.join(unknown)}")
    if not key and not options.sandbox and not options.dry_run:
        raise ConfigError(f"no API key: set {cfg.api.key_env} in the environment, or use --sandbox")
    started_at = time.time()
    with RunLock(cfg.state_dir), run_log(cfg.state_dir, secrets=(key,)):
        remove_stale_temps(publish.written_dirs(cfg, manifest))
        ckpt = Checkpoint.open(cfg.checkpoint_path)
        try:
            prepared = prepare(cfg, manifest, options, key, ckpt)
            if options.dry_run:
                return RunResult(exit_code=0, counts=Counter(), plan=prepared.plan)
            with _recorded(prepared, started_at) as record:
                with long_lived():  # the collector passes over the plan's items and rows no more
                    executed = loop.run(execute(prepared))
                return record(finish(prepared, executed))
        finally:
            ckpt.close()


@contextlib.contextmanager
def _recorded(prepared: Prepared, started_at: float):
    """This run's row in the checkpoint's history (store/history.py), ended with its exit code however
    the run ends. Yields `record(result)`, which ends it with the result's code and returns the result."""
    options = prepared.options
    prepared.ckpt.begin_run(started_at=started_at, version=installed_version(), options={
        "api": prepared.endpoint.kind, "force": options.force, "skip_invalid": options.skip_invalid,
        "only": sorted(options.only)[:20], "only_count": len(options.only),
        "shard": f"{prepared.cfg.shard.index}/{prepared.cfg.shard.count}" if prepared.cfg.shard else None})

    def end(code: int, elapsed_s: float) -> None:
        with contextlib.suppress(CheckpointError):  # a checkpoint that failed the run cannot take this
            prepared.ckpt.end_run(exit_code=code, elapsed_s=elapsed_s)

    def record(result: RunResult) -> RunResult:
        end(result.exit_code, result.elapsed_s)
        return result
    try:
        yield record
    except PipelineError as exc:
        end(exc.exit_code, time.monotonic() - prepared.started)
        raise
    except KeyboardInterrupt:
        end(130, time.monotonic() - prepared.started)
        raise


# -- prepare ---------------------------------------------------------------------------------------

def prepare(cfg: RunConfig, manifest: Manifest, options: RunOptions, key: str | None,
            ckpt: Checkpoint) -> Prepared:
    """Make the plan (plan/make.py), write the rows it holds, ask before a spend over budget.confirm_over."""
    started = time.monotonic()
    outputs, listing = _output_store(cfg, options)
    endpoint = _endpoint(cfg, options, key)
    try:
        where = Where(cfg.output.dir, endpoint.id, endpoint.kind, state_dir=cfg.state_dir, sandbox=options.sandbox,
                      force=options.force, only=options.only,
                      legacy_kind=None if options.sandbox else cfg.api.base_url)
        # metadata only, for 0 credits: the planner then finds the done outputs intact
        mend = None if options.dry_run else (lambda items, rows: disclose.refresh(cfg, ckpt, rows, items, outputs,
                                                                                   listing))
        the_plan = make_plan(cfg, manifest, ckpt, where, outputs=outputs, listing=listing, before_deciding=mend)
        prepared = Prepared(cfg, manifest, options, ckpt, endpoint, the_plan, the_plan.rows, started, outputs,
                            disclose.Discloser(cfg, manifest.items))
        if options.dry_run:
            _close(endpoint)
            return prepared
        ckpt.insert(the_plan.writes)  # save() keeps these rows current: none is read back from SQLite
        prepared.started += _confirm(cfg, options, the_plan)
        return prepared
    except BaseException:
        _close(endpoint)
        raise


def _output_store(cfg: RunConfig, options: RunOptions) -> tuple[Remote | None, dict[str, int] | None]:
    """output.dir as a storage URL, and what is in it (one listing); before anything is spent, a
    test write, so a missing bucket, missing credentials or a read-only role stop the run here."""
    if cfg.output_url is None:
        return None, None
    store = Remote.open(cfg.output_url, cfg.storage.options, cfg.retries)
    listing = store.sizes()
    if not options.dry_run:
        store.check_writable()
    return store, listing


def _close(endpoint: Endpoint) -> None:
    if endpoint.sandbox_socket is not None:
        endpoint.sandbox_socket.close()


def _confirm(cfg: RunConfig, options: RunOptions, the_plan: Plan) -> float:
    """Ask before a spend over budget.confirm_over; returns the seconds spent waiting for the answer."""
    needed = the_plan.credits_needed
    if not options.confirm or needed <= cfg.budget.confirm_over:
        return 0.0
    asked = time.monotonic()
    if not options.confirm(needed):
        raise PipelineError(f"not confirmed: this run needs up to {needed} credits; nothing was spent "
                            "(pass --yes to skip the question)")
    return time.monotonic() - asked


def _endpoint(cfg: RunConfig, options: RunOptions, key: str | None) -> Endpoint:
    """The API this run speaks to; with --sandbox, a private one whose port is bound here."""
    if not options.sandbox:
        return Endpoint(cfg.api.base_url, key or "", "lightx", cfg.api.base_url)
    from pipeline.sandbox import ROOT, SANDBOX_KEY
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    return Endpoint(f"http://127.0.0.1:{port}{ROOT}", SANDBOX_KEY, "sandbox", f"sandbox@{port}", sock)


# -- execute ---------------------------------------------------------------------------------------

async def execute(prepared: Prepared) -> Executed:
    """Drive every planned item on one event loop and one Wire; run-level faults are returned."""
    cfg, options = prepared.cfg, prepared.options
    async with Wire(limit=max(100, cfg.limits.workers * 2)) as wire, _serving(prepared), \
            qa.Scorer(cfg, wanted=bool(prepared.plan.units) and cfg.qa.min_fidelity > 0) as scorer:
        endpoint = prepared.endpoint
        client = Client(wire, endpoint.base_url, endpoint.key, retries=cfg.retries,
                        pacer=Pacer(cfg.limits.requests_per_second), timeout_s=cfg.api.timeout_s)
        ckpt = prepared.ckpt
        ckpt.trim_order_times()
        ctx = Context(cfg=cfg, client=client, ckpt=ckpt, api_id=endpoint.id, api_kind=endpoint.kind,
                      source_dir=cfg.state_dir / "sources", outputs=prepared.outputs, discloser=prepared.discloser,
                      qa=scorer,
                      order_slots=asyncio.Semaphore(cfg.limits.concurrency),
                      budget=Budget(cfg.budget.max_credits),
                      times=OrderTimes(concurrency=cfg.limits.concurrency,
                                       history=ckpt.order_times(endpoint.kind, WINDOW)))
        # The results table needs pyarrow at the end; importing it now costs the run no wall time.
        threading.Thread(target=results.prewarm, name="prewarm", daemon=True).start()
        fatal: PipelineError | None = None
        try:
            interrupted = await drive_all(ctx, prepared.plan.units, prepared.rows, progress=options.progress,
                                          quiet=options.quiet)
        except PipelineError as exc:  # key rejected, checkpoint or output dir unusable
            fatal, interrupted = exc, False
        with contextlib.suppress(CheckpointError):
            ckpt.flush()
    return Executed(interrupted=interrupted, fatal=fatal, credits=ctx.budget.credits,
                    submits=ctx.budget.submits, stop_reason=ctx.budget.stop_reason, requests=client.requests)


@contextlib.asynccontextmanager
async def _serving(prepared: Prepared) -> AsyncIterator[None]:
    """With --sandbox, serve a private sandbox on the socket `prepare` bound, for this loop's life."""
    sock = prepared.endpoint.sandbox_socket
    if sock is None:
        yield
        return
    from pipeline.sandbox import SandboxOptions, start_sandbox
    running = await start_sandbox(prepared.options.sandbox_options or SandboxOptions(), sock=sock)
    try:
        yield
    finally:
        await running.close()


# -- finish ----------------------------------------------------------------------------------------

def finish(prepared: Prepared, executed: Executed) -> RunResult:
    """Write the results table and report whatever happened, then raise a run-level fault if any."""
    cfg, manifest, rows = prepared.cfg, prepared.manifest, prepared.rows
    counts = results.status_counts(*results.by_variant(cfg, manifest, rows))
    removed, freed = steps_dir.remove_unreferenced(cfg.state_dir, rows.values())
    if removed:
        log.info("removed %d intermediate outputs (%d bytes) from %s: no checkpoint row names them any more",
                 removed, freed, cfg.state_dir / "steps")
    store_files: list = []  # outputs/storefiles.StoreFile: the store import file, when one is written
    try:
        if prepared.discloser is not None:
            prepared.discloser.record(cfg, rows, manifest.items)
        if not executed.interrupted and executed.fatal is None:  # renditions: made here, 0 credits
            derive(cfg, manifest.items, rows, prepared.outputs)
        results_path = publish.write_outputs(cfg, manifest, rows, elapsed_s=time.monotonic() - prepared.started,
                                             history=prepared.ckpt.history(), store_files=store_files)
    except StorageBusy as exc:  # the table's and report's PUTs were retried for the whole budget
        if executed.fatal is not None:
            raise executed.fatal from None
        kept = outbox.waiting(cfg.state_dir, rows.values())
        raise StorageBusy(f"{exc}" + (f"; {kept} outputs paid for wait in {cfg.state_dir / outbox.OUTBOX}, the next "
                                      f"run uploads them for 0 credits" if kept else "")) from None
    except (OutputError, CheckpointError):
        if executed.fatal is None:
            raise
        results_path = None  # the disk that failed the run cannot take the table either
    if executed.fatal is not None:
        raise executed.fatal
    interrupted = executed.interrupted
    # Outputs held for review are not failures: cron sees them counted apart, not a red run.
    exit_code = 130 if interrupted else (0 if counts["done"] + counts["review"] == sum(counts.values()) else 1)
    message = "interrupted: stopped new work, progress saved" if interrupted else executed.stop_reason
    if cfg.output_url is not None and (kept := outbox.waiting(cfg.state_dir, rows.values())):
        message = "; ".join(filter(None, (message, (
            f"{kept} output{'s' if kept != 1 else ''} paid for wait in {cfg.state_dir / outbox.OUTBOX}: "
            f"{cfg.output_url} would not take them; the next run uploads them for 0 credits"))))
    return RunResult(exit_code=exit_code, counts=counts, credits=executed.credits, submits=executed.submits,
                     elapsed_s=time.monotonic() - prepared.started, message=message, plan=prepared.plan,
                     results_path=results_path, extra={"requests": executed.requests, "store_files": store_files})
