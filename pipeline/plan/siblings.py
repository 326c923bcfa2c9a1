"""Rows that another shard layout (or an unsharded run) under the same state.dir holds for this
run's items: copied in, so nothing is bought twice and orders in flight there are collected here.

    copied = sibling_rows(cfg, rows, items)     # read-only; the caller inserts them
"""
from __future__ import annotations

from collections.abc import Mapping

from pipeline.inputs.manifest import Item
from pipeline.inputs.settings import RunConfig
from pipeline.inputs.variants import step_id
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import batches
from pipeline.store.state_dirs import checkpoint_paths, merged_rows


def sibling_rows(cfg: RunConfig, rows: Mapping[str, Row], items: list[Item]) -> list[Row]:
    """Rows of other checkpoints under state.dir for items (and their variants' steps) this
    checkpoint does not know; a rerun whose checkpoint knows every one reads no other checkpoint."""
    others = [p for p in checkpoint_paths(cfg.state_root) if p != cfg.checkpoint_path]
    if not others:
        return []
    ids = [i.id for i in items]
    if cfg.variants:  # a variant's steps are rows of their own
        ids += [step_id(i.id, v.name, k) for i in items for v in cfg.variants for k in range(len(v.steps))]
    # One query a batch, in the manifest's order (its neighbours are the index's neighbours), not one an id.
    wanted = {key for chunk, known in batches(rows, ids, ("state",), key=str) for key in chunk if key not in known}
    del ids
    if not wanted:
        return []
    return list(merged_rows(others, wanted).values())  # only this run's unknown ids, a batch a query
