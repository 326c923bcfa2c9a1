"""Where each item's renditions are, for the results table (`<name>_path` columns) and the report's links."""
from __future__ import annotations

from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.inputs.delivery import renditions_of
from pipeline.inputs.manifest import Manifest
from pipeline.plan.shards import NAME
from pipeline.store.checkpoint import Row
from pipeline.store.delivered import Delivered
from pipeline.store.rowview import batches


def rendition_paths(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> dict[str, list[str | None]]:
    """{rendition name: its path relative to output.dir per manifest item, None where it is not made}."""
    wanted = renditions_of(cfg)
    if not wanted:
        return {}
    made = {}
    for state_dir in _state_dirs(cfg):
        made.update(Delivered.read(state_dir)[1])
    found: dict[str, list[str | None]] = {r.name: [] for r in wanted}
    for chunk, done in batches(rows, manifest.items, ("state", "output_sha256")):  # a batch of rows at a time
        for r in wanted:
            paths = found[r.name]
            for item in chunk:
                row = done.get(item.id)
                record = made.get((r.name, item.output_name)) if row is not None and row[0] == "done" else None
                paths.append(record.path if record is not None and record.path == r.path_of(item.output_name)
                             and record.source_sha256 == row[1] else None)
    return found


def rendition_columns(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> dict[str, list[str | None]]:
    """The results table's `<name>_path` columns: paths relative to output.dir, or URLs in a bucket."""
    base = f"{cfg.output_url}/" if cfg.output_url else ""
    return {f"{name}_path": [base + p if p else None for p in paths] + [None] * len(manifest.invalid)
            for name, paths in rendition_paths(cfg, manifest, rows).items()}


def _state_dirs(cfg: RunConfig) -> list[Path]:
    """This run's state directory and every shard's under state.dir (`pipeline report` merges them)."""
    dirs = [cfg.state_dir, cfg.state_root]
    try:
        dirs += sorted(p for p in cfg.state_root.iterdir() if NAME.fullmatch(p.name))
    except OSError:
        pass
    return list(dict.fromkeys(dirs))
