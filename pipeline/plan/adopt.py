"""Outputs in a bucket that the checkpoint does not know: adopted as done, never bought again.

    rows = adopted_rows(cfg, items, known, shas, listing, store, api_kind=endpoint.kind)

A pod that lost its state directory (or a shard layout that changed) finds the catalog's outputs
still in the bucket. Each output object carries the fingerprint of the order that made it in its
user metadata (`run/stages/download.py`); an item whose output is there, under its current
fingerprint, gets a `done` row and costs nothing. One HEAD per such object, a few at a time; the
objects of items the checkpoint knows are not looked at. Orders in flight when the state was lost
cannot be found this way: only the state directory knows their ids.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from pipeline.inputs.manifest import Item
from pipeline.inputs.settings import RunConfig
from pipeline.outputs import bucket
from pipeline.plan.planner import fingerprint
from pipeline.run.states import State
from pipeline.store.checkpoint import Row
from pipeline.store.names import FINGERPRINT_META, SHA256_META
from pipeline.store.remote import Remote

HEADS_AT_ONCE = 16


def adopt_outputs(items: list[Item], known: Mapping[str, Row], shas: Mapping[str, str],
                  listing: Mapping[str, int], store: Remote, *, api_kind: str) -> list[Row]:
    """`done` rows for items without a checkpoint row whose output object was made by their fingerprint."""
    candidates = [item for item in items
                  if item.id not in known and item.id in shas and item.output_name in listing]
    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=min(HEADS_AT_ONCE, len(candidates))) as pool:
        metas = list(pool.map(lambda item: store.metadata(item.output_name), candidates))
    now = time.time()
    adopted = []
    for item, meta in zip(candidates, metas):
        fp = fingerprint(shas[item.id], item.prompt, api_kind)
        if meta.get(FINGERPRINT_META) == fp and meta.get(SHA256_META):
            adopted.append(Row(id=item.id, fingerprint=fp, state=State.DONE, image_sha256=shas[item.id],
                               output_path=item.output_name, output_sha256=meta[SHA256_META],
                               output_size=listing[item.output_name], finished_at=now,
                               error=None))
    return adopted


def adopted_rows(cfg: RunConfig, items: list[Item], known: Mapping[str, Row], shas: Mapping[str, str],
                 listing: Mapping[str, int], store: Remote, *, api_kind: str) -> list[Row]:
    """`adopt_outputs`, with what the results table in the bucket says of them (their orders,
    credits, times): it survived the state directory too."""
    adopted = adopt_outputs(items, known, shas, listing, store, api_kind=api_kind)
    if not adopted:
        return []
    table = bucket.stored_rows(cfg, whole=True)
    return [dataclasses.replace(row, order_id=old.order_id, output_url=old.output_url, attempts=old.attempts,
                                credits=old.credits, submitted_at=old.submitted_at,
                                finished_at=old.finished_at or row.finished_at)
            if (old := table.get(row.id)) and old.output_sha256 == row.output_sha256 else row
            for row in adopted]
