"""When output.dir is a storage URL: the table and report, made in the local output.dir
(`<state.dir>/site`), go up beside the outputs, with the same relative links.

    stored = bucket.before_report(cfg)          # previews in the bucket, fetched if missing here
    bucket.publish(cfg, files, whole=True)      # results, report pages, previews: up; stale: removed

The outputs themselves are written straight to the bucket by the download stage, with their preview
made from the bytes in hand into the local thumbs/.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pipeline.inputs.config import RunConfig
from pipeline.media.previews import PREVIEW_NAME, THUMBS
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Row
from pipeline.store.remote import Remote, StorageError, describe

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
                 ".parquet": "application/vnd.apache.parquet", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}
PUTS_AT_ONCE = 16
FETCHES_AT_ONCE = 256  # previews fetched back per batch (a few KB each)
PAGE_NAME = re.compile(r"report(-[0-9]+)?\.html")  # outputs/report.page_name


def _store(cfg: RunConfig) -> Remote:
    return Remote.open(cfg.output_url, cfg.storage.options, cfg.retries)


def _previews_in(listing: dict[str, int]) -> set[str]:
    """Names of the previews (as the report makes them) in thumbs/ of a bucket listing."""
    cut = len(THUMBS) + 1
    return {name[cut:] for name in listing if name.startswith(f"{THUMBS}/") and PREVIEW_NAME.fullmatch(name[cut:])}


def _local_thumbs(cfg: RunConfig) -> set[str]:
    try:
        return {name for name in os.listdir(cfg.output.dir / THUMBS) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


def before_report(cfg: RunConfig, *, restore: bool = True) -> dict[str, int]:
    """What is in the bucket under output.dir ({name: size}, one listing); with `restore`, previews the
    bucket has and this disk lacks (a lost state directory, another shard's pod) are fetched, so the
    report need not make them again (an output's preview cannot be made here: the output is not on
    this disk). Pass the listing on to `publish`."""
    store = _store(cfg)
    listing = store.sizes()
    if not restore:
        return listing
    missing = [f"{THUMBS}/{name}" for name in sorted(_previews_in(listing) - _local_thumbs(cfg))]
    for start in range(0, len(missing), FETCHES_AT_ONCE):  # a batch in memory at a time
        for name, data in store.read_many(missing[start:start + FETCHES_AT_ONCE]).items():
            if isinstance(data, bytes):
                write_atomically(cfg.output.dir / name, data)
    return listing


def publish(cfg: RunConfig, files: list[str], stored: dict[str, int], *, whole: bool) -> None:
    """Upload `files` (names in the local output.dir) and every preview the bucket lacks (`stored`:
    the listing `before_report` made). `whole` (the report over the whole catalog was made): previews
    and report pages the bucket has and this report no longer uses are removed."""
    store = _store(cfg)
    local = _local_thumbs(cfg)
    names = [name for name in files if (cfg.output.dir / name).is_file()]
    names += sorted(f"{THUMBS}/{name}" for name in local if f"{THUMBS}/{name}" not in stored)

    def put(name: str) -> None:
        store.put(name, (cfg.output.dir / name).read_bytes(),
                  content_type=CONTENT_TYPES.get(posixpath.splitext(name)[1].lower(), "application/octet-stream"))
    if names:
        with ThreadPoolExecutor(max_workers=min(PUTS_AT_ONCE, len(names))) as pool:
            list(pool.map(put, names))  # the first fault (OutputError) is raised here
    if whole:
        # Only names the report makes: an output the manifest put in thumbs/ is never touched.
        stale = [f"{THUMBS}/{name}" for name in sorted(_previews_in(stored) - local)]
        stale += [name for name in stored if PAGE_NAME.fullmatch(name) and name not in files]
        store.remove(stale)


PART_NAME = re.compile(r"results\.shard-[0-9]+-of-[0-9]+\.csv")
_STATES = {"done": "done", "failed": "failed"}


def stored_rows(cfg: RunConfig, *, whole: bool = False) -> dict[str, Row]:
    """Rows read back from the shards' parts of the results table in the bucket, for `pipeline
    report` on a machine that has not every shard's state directory (an Indexed Job's pods each keep
    theirs on a volume of their own). Only what the table shows: enough for the table and report,
    never for a run (no fingerprint, no upload). With variants, a unit's row stands for its last
    step, the steps before it done and free. `whole`: results.csv too (the last whole table)."""
    store = _store(cfg)
    parts = sorted(name for name in store.children() if PART_NAME.fullmatch(name) or whole and name == "results.csv")
    rows: dict[str, Row] = {}
    for name, data in store.read_many(parts).items():
        if isinstance(data, BaseException):
            raise StorageError(describe(data, store.url_of(name)))
        for record in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")):
            for row in _rows_of(cfg, record):
                old = rows.get(row.id)
                if old is None or (row.updated_at or 0) > (old.updated_at or 0):
                    rows[row.id] = row
    return rows


def _rows_of(cfg: RunConfig, record: dict[str, str]) -> list[Row]:
    if not record.get("id"):
        return []
    when = {key: _epoch(record.get(key)) for key in ("submitted_at", "finished_at")}
    row = Row(id=record["id"], fingerprint="", state=_STATES.get(record.get("status", ""), "pending"),
              order_id=record.get("order_id") or None, output_url=record.get("output_url") or None,
              output_path=record.get("output_path") or None, output_sha256=record.get("output_sha256") or None,
              error=record.get("error") or None, attempts=_int(record.get("attempts")),
              image_sha256=record.get("image_sha256") or None,
              credits=_int(record.get("credits")), updated_at=when["finished_at"] or when["submitted_at"], **when)
    variant = record.get("variant")
    if not cfg.variants or not variant:
        return [row]
    from pipeline.inputs.variants import step_id
    steps = next((len(v.steps) for v in cfg.variants if v.name == variant), 0)
    return [dataclasses.replace(row, id=step_id(row.id, variant, k), credits=0, attempts=0, state="done")
            for k in range(steps - 1)] + [dataclasses.replace(row, id=step_id(row.id, variant, steps - 1))] \
        if steps else []


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
