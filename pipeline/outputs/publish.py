"""What a run leaves behind: results.csv, results.parquet, then report.html, which links to them.

    publish.write_outputs(cfg, manifest, rows)   # at the end of every run, however it ended
    publish.rebuild("configs/catalog.yaml")      # `pipeline report`: from the checkpoint alone
"""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import CheckpointError
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Manifest
from pipeline.outputs import results
from pipeline.outputs.report import write_report
from pipeline.store.checkpoint import Checkpoint
from pipeline.store.lock import RunLock


def written_dirs(cfg: RunConfig, manifest: Manifest) -> set[Path]:
    """Every directory a run writes files into atomically (outputs, previews, fetched sources)."""
    out = cfg.output.dir
    dirs = {out, out / "thumbs", cfg.state_dir, cfg.state_dir / "sources", cfg.state_dir / "remote-cache"}
    dirs.update((out / name).parent for item in manifest.items for name in item.output_names or (item.output_name,)
                if "/" in name)
    if cfg.variants:
        dirs.add(cfg.state_dir / "steps")
    return dirs


def write_outputs(cfg: RunConfig, manifest: Manifest, rows: dict, *, elapsed_s: float | None = None,
                  force: bool = False) -> Path:
    """results.csv, results.parquet, then report.html; returns the CSV path."""
    manifest, rows = results.by_variant(cfg, manifest, rows)
    path = results.write(cfg, manifest, rows, force=force)
    write_report(cfg, manifest, rows, summary={"elapsed_s": elapsed_s} if elapsed_s is not None else None)
    return path


def rebuild(config_path: str | Path) -> Path:
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
