"""Where each item's renditions are, for the results table (`<name>_path` columns) and the report's links."""
from __future__ import annotations

from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.inputs.delivery import renditions_of
from pipeline.inputs.manifest import Manifest
from pipeline.plan.shards import NAME
from pipeline.store.checkpoint import Row
from pipeline.store.delivered import Delivered


def rendition_paths(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> dict[str, list[str | None]]:
    """{rendition name: its path relative to output.dir per manifest item, None where it is not made}."""
    wanted = renditions_of(cfg)
    if not wanted:
        return {}
    made = {}
    for state_dir in _state_dirs(cfg):
        made.update(Delivered.read(state_dir)[1])
    found: dict[str, list[str | None]] = {}
    for r in wanted:
        paths: list[str | None] = []
        for item in manifest.items:
            row = rows.get(item.id)
            record = made.get((r.name, item.output_name)) if row is not None and row.state == "done" else None
            paths.append(record.path if record is not None and record.path == r.path_of(item.output_name)
                         and record.source_sha256 == row.output_sha256 else None)
        found[r.name] = paths
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
