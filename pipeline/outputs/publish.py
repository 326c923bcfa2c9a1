"""What a run leaves behind: results.csv, results.parquet, then report.html, which links to them.

    publish.write_outputs(cfg, manifest, rows)   # at the end of every run, however it ended
    publish.rebuild("configs/catalog.yaml")      # `pipeline report`: from the checkpoint alone
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from pipeline.errors import CheckpointError
from pipeline.inputs.config import CHECKPOINT_NAME, RunConfig
from pipeline.inputs.delivery import renditions_of
from pipeline.inputs.manifest import Manifest
from pipeline.outputs import bucket, results, storefiles
from pipeline.outputs.report import make_previews, write_report
from pipeline.store import history as run_history
from pipeline.store.checkpoint import RUNS_SHOWN, Checkpoint, Row
from pipeline.store.history import History
from pipeline.store.lock import RunLock
from pipeline.store.rowview import ReadView
from pipeline.store import state_dirs
from pipeline.store.state_dirs import merged_rows  # noqa: F401 - named here too, where callers found it


def written_dirs(cfg: RunConfig, manifest: Manifest) -> set[Path]:
    """Every directory a run writes files into atomically (outputs, previews, fetched sources)."""
    out = cfg.output.dir
    dirs = {out, out / "thumbs", cfg.state_dir, cfg.state_dir / "sources", cfg.state_dir / "remote-cache"}
    dirs.update((out / name).parent for item in manifest.items for name in item.output_names or (item.output_name,)
                if "/" in name)
    if cfg.variants:
        dirs.add(cfg.state_dir / "steps")
    for rendition in renditions_of(cfg):  # their files are written atomically too
        dirs.update((out / rendition.path_of(name)).parent for item in manifest.items
                    for name in item.output_names or (item.output_name,))
    return dirs


def write_outputs(cfg: RunConfig, manifest: Manifest, rows: dict, *, elapsed_s: float | None = None,
                  force: bool = False, history: History | None = None,
                  store_files: list | None = None) -> Path | str:
    """results.csv, results.parquet, then report.html (with the run history, if given); returns the CSV
    path (its URL when output.dir is a storage URL).

    A shard writes only its part of the table (results.shard-K-of-N.csv and .parquet): the report
    over the whole manifest is `pipeline report`'s, once every shard has run. `history` is the
    unsharded checkpoint's (a run's own); the report adds every shard's under state.dir to it.
    A store export's import file (outputs/storefiles) is written too, and appended to `store_files`."""
    store = manifest.store
    manifest, rows = results.by_variant(cfg, manifest, rows)
    path = results.write(cfg, manifest, rows, force=force)
    tables = [path.name, path.with_suffix(".parquet").name]
    if store is not None and cfg.shard is None:  # a shard's part would list only its own products
        written = storefiles.write(cfg, dataclasses.replace(manifest, store=store), storefiles.done_pictures(manifest, rows))
        if written is not None:
            tables.append(written.name)
            if store_files is not None:
                store_files.append(written)
    if cfg.shard is not None:
        if cfg.output_url:
            stored = bucket.before_report(cfg, restore=False)
            make_previews(cfg, manifest, rows, set(stored))
            bucket.publish(cfg, tables, stored, whole=False)
            return f"{cfg.output_url}/{path.name}"
        return path
    if history is not None:
        others = [p for p in checkpoint_paths(cfg) if p != cfg.checkpoint_path]
        history = run_history.merged([history, *(Checkpoint.read_history(p) for p in others)],
                                     RUNS_SHOWN)
    stored = bucket.before_report(cfg) if cfg.output_url else None
    write_report(cfg, manifest, rows, summary={"elapsed_s": elapsed_s, "history": history},
                 stored=None if stored is None else set(stored), force=force)
    if stored is not None:
        pages = sorted(name for name in os.listdir(cfg.output.dir) if bucket.PAGE_NAME.fullmatch(name))
        bucket.publish(cfg, tables + pages, stored, whole=True)
        return f"{cfg.output_url}/{path.name}"
    return path


def rebuild(config_path: str | Path) -> Path | str:
    """`pipeline report`: rewrite the table and report from the checkpoints alone; no API call.

    Every shard's checkpoint under state.dir is read, and so is an unsharded one: one table and one
    report over the whole manifest. With output.dir in a bucket, the shards' parts of the table
    there stand in for the checkpoints this machine does not have. An item found in several (the
    shard count changed between runs) is shown as its most recently updated row."""
    from pipeline.inputs.validate import validate
    cfg, manifest, _ = validate(config_path, check_images=False)
    paths = checkpoint_paths(cfg)
    stored = bucket.stored_rows(cfg) if cfg.output_url else {}
    if not paths and not stored:
        raise CheckpointError(f"no checkpoint under {cfg.state_root}: nothing has run yet")
    with RunLock(cfg.state_dir), ReadView(paths, base=stored) as rows:
        # Read a batch at a time, never all held (#21); a shard whose state is not here: as its part
        # of the table says.
        own = Checkpoint.read_history(cfg.checkpoint_path) if cfg.checkpoint_path in paths else \
            run_history.History([], 0, 0, 0)
        write_outputs(cfg, manifest, rows, force=True, history=own)  # the shards' are added there
    return f"{cfg.output_url}/report.html" if cfg.output_url else cfg.output.dir / "report.html"


def checkpoint_paths(cfg: RunConfig) -> list[Path]:
    """The unsharded checkpoint and every shard's, those that exist, unsharded first."""
    return state_dirs.checkpoint_paths(cfg.state_root)


def merged_history(paths: list[Path], limit: int = RUNS_SHOWN) -> History:
    """The run history of several checkpoints (read-only, as `merged_rows`): newest runs, summed totals."""
    return run_history.merged([Checkpoint.read_history(path, limit) for path in paths], limit)
