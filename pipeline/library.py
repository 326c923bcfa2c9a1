"""The library's front door: one function per command, each taking the config's path.

    import pipeline
    overview = pipeline.validate("configs/catalog.yaml")     # nothing is sent
    result = pipeline.run("configs/catalog.yaml", sandbox=True)
    result.exit_code, result.counts["done"], result.credits

`cli.py` calls exactly these, one call per command, and only prints what they return. They sit on
top of every other floor (like `cli.py`), so the modules they reach are imported when first called:
`import pipeline` stays cheap for `pipeline --version` and the sandbox.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, InvalidItems

if TYPE_CHECKING:
    from pipeline.inputs.manifest import InvalidItem
    from pipeline.inputs.validate import Overview
    from pipeline.plan.shards import Shard
    from pipeline.run.engine import RunResult

NOT_SENT = "nothing was sent; fix these or pass --skip-invalid"


def validate(config_path: str | Path) -> Overview:
    """Check the config, the manifest and every image; what a full run would do, and every problem.

    An invalid config (or a manifest that cannot be read) raises ``ConfigError`` listing every
    problem; items that cannot run are counted in ``invalid`` and worded in ``problems``.
    """
    from pipeline.inputs.delivery import warnings
    from pipeline.inputs.validate import overview
    cfg, counted = overview(config_path)  # the manifest's valid rows counted, not held
    return dataclasses.replace(counted, warnings=tuple(warnings(cfg)))


def run(config_path: str | Path, *, sandbox: bool = False, shard: str | Shard | None = None,
        only: Collection[str] = (), force: bool = False, dry_run: bool = False, progress: bool | None = None,
        quiet: bool = False, skip_invalid: bool = False, confirm: Callable[[int], bool] | None = None,
        on_skipped: Callable[[Sequence[InvalidItem]], None] | None = None) -> RunResult:
    """Validate, plan against the checkpoint, then run every new or changed item; `pipeline run`.

    - ``sandbox``: against a private LightX-compatible sandbox on a free loopback port, started and
      stopped by this call (no key, no network); otherwise the key is read from ``api.key_env``.
    - ``shard``: ``"K/N"`` (or a ``Shard``): only the items whose SHA-256 of ``id`` is K mod N.
    - ``only``: these item ids; ``force``: reprocess them even when unchanged (spends credits).
    - ``dry_run``: plan only; ``result.plan`` says what a run would buy. No API call.
    - ``progress``: a bar (True), plain lines on stderr (False), a bar only on a TTY (None);
      ``quiet``: neither.
    - ``skip_invalid``: record invalid items as failed and run the rest (``on_skipped`` is told
      which, before anything is sent); otherwise they raise ``InvalidItems`` (exit code 2).
    - ``confirm``: asked with the credits needed before a spend over ``budget.confirm_over``; None
      never asks.

    Raises a ``PipelineError`` for a run-level fault; failed items are data (``result.counts``).
    """
    from pipeline.inputs.config import api_key
    from pipeline.inputs.validate import plan_of, problem_lines, validate as check
    from pipeline.plan.shards import Shard
    from pipeline.run import engine

    owns = None  # a shard's items are kept as the manifest streams; a bad --shard is said after the config
    if shard is not None:
        with contextlib.suppress(ConfigError):
            owns = (Shard.parse(shard) if isinstance(shard, str) else shard).owner()
    cfg, manifest, _ = check(config_path, keep=owns)
    if shard is not None:  # the manifest holds this shard's rows only (a bad --shard raises here)
        cfg = cfg.with_shard(Shard.parse(shard) if isinstance(shard, str) else shard)
    overview = dataclasses.replace(plan_of(manifest, cfg), problems=tuple(problem_lines(manifest)))
    if manifest.invalid and not skip_invalid:
        raise InvalidItems([*overview.problems, NOT_SENT], items=overview.items, invalid=overview.invalid)
    if manifest.invalid and on_skipped is not None:
        on_skipped(manifest.invalid)
    options = engine.RunOptions(sandbox=sandbox, skip_invalid=skip_invalid, force=force, only=frozenset(only),
                                dry_run=dry_run, quiet=quiet, progress=progress, confirm=confirm)
    result = engine.run(cfg, manifest, options, key=api_key(cfg))
    return dataclasses.replace(result, overview=overview)


def status(config_path: str | Path, *, runs: int = 5, check_files: bool = False) -> dict[str, Any]:
    """What the checkpoints know, every shard's summed; `pipeline status --json` is this document.

    Keys: ``checkpoint``, ``exists``, ``counts`` (items and each state), ``in_flight``, ``credits``
    (``spent``, ``last_run``, ``all_time``), ``failures``, ``notes``, ``runs`` (the newest ``runs``
    first), ``total_runs`` and ``disclosure`` (delivered pictures, those lacking the XMP; with
    ``files_checked`` when only a sample of the files on disk was looked at, which ``check_files``
    turns into a look at every one). Makes no API call.
    """
    from pipeline.outputs.status import read_status
    if runs < 1:
        raise ConfigError(f"runs: expected at least 1, got {runs}")
    return read_status(str(config_path), runs=runs, check_files=check_files)


def report(config_path: str | Path) -> Path | str:
    """Rewrite results.csv, results.parquet and report.html from the checkpoints alone (every shard's
    merged); returns the report's path, or its URL when output.dir is a storage URL. No API call."""
    from pipeline.outputs.publish import rebuild
    return rebuild(config_path)


def review(config_path: str | Path, *, approve: Sequence[str] = (), reject: Sequence[str] = (),
           reason: str | None = None) -> dict[str, Any]:
    """The outputs held for their fidelity (state ``review``), after applying any decisions; `pipeline review`.

    ``approve`` makes those items ``done``; ``reject`` has the next ``run`` buy each again (1 credit,
    at most ``qa.max_rebuys`` times per item). Each decision is kept in the checkpoint with its time
    and ``reason``, and the results table and report are rebuilt. Returns ``held`` (each held item's
    score and the commands that decide it), ``approved`` and ``rejected``. A decision on an item that
    is not held raises ``ConfigError`` and nothing is decided. Makes no API call.
    """
    from pipeline.inputs.config import load_config
    from pipeline.outputs import review as held
    from pipeline.outputs.publish import rebuild
    cfg = load_config(config_path)
    outcome = held.Outcome()
    if approve or reject:
        outcome = held.decide(cfg, approve=list(approve), reject=list(reject), reason=reason)
        rebuild(config_path)  # the table and report show the decisions now
    return {"held": held.held_items(cfg), "approved": outcome.approved, "rejected": outcome.rejected}
