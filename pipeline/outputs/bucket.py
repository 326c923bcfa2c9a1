"""When output.dir is a storage URL: the table and report, made in the local output.dir
(`<state.dir>/site`), go up beside the outputs, with the same relative links.

    stored = bucket.before_report(cfg)          # previews in the bucket, fetched if missing here
    bucket.publish(cfg, files, whole=True)      # results, report pages, previews: up; stale: removed

The outputs themselves are written straight to the bucket by the download stage, with their preview
made from the bytes in hand into the local thumbs/.
"""
from __future__ import annotations

import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor

from pipeline.inputs.config import RunConfig
from pipeline.media.previews import PREVIEW_NAME, THUMBS
from pipeline.store.atomic import write_atomically
from pipeline.store.remote import Remote

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
                 ".parquet": "application/vnd.apache.parquet", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}
PUTS_AT_ONCE = 16
PAGE_NAME = re.compile(r"report(-[0-9]+)?\.html")  # outputs/report.page_name


def _store(cfg: RunConfig) -> Remote:
    return Remote.open(cfg.output_url, cfg.storage.options)


def _local_thumbs(cfg: RunConfig) -> set[str]:
    try:
        return {name for name in os.listdir(cfg.output.dir / THUMBS) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


def before_report(cfg: RunConfig) -> set[str]:
    """The output names in the bucket (one listing); previews the bucket has and this disk lacks (a
    lost state directory, another shard's pod) are fetched, so the report need not make them again."""
    listing = _store(cfg).sizes()
    local = _local_thumbs(cfg)
    missing = [name for name in listing if name.startswith(f"{THUMBS}/")
               and PREVIEW_NAME.fullmatch(name[len(THUMBS) + 1:]) and name[len(THUMBS) + 1:] not in local]
    for name, data in _store(cfg).read_many(missing).items():
        if isinstance(data, bytes):
            write_atomically(cfg.output.dir / name, data)
    return set(listing)


def publish(cfg: RunConfig, files: list[str], *, whole: bool) -> None:
    """Upload `files` (names in the local output.dir) and every preview the bucket lacks. `whole`
    (the report over the whole catalog was made): previews and report pages the bucket has and
    this report no longer uses are removed."""
    store = _store(cfg)
    stored = store.sizes()
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
        stale = [name for name in stored if name.startswith(f"{THUMBS}/")
                 and PREVIEW_NAME.fullmatch(name[len(THUMBS) + 1:]) and name[len(THUMBS) + 1:] not in local]
        stale += [name for name in stored if PAGE_NAME.fullmatch(name) and name not in files]
        store.remove(stale)
