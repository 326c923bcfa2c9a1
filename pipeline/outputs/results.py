"""The results table: one row per current manifest item, as CSV and Parquet, from the checkpoint."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from pipeline.version import installed_version
from pipeline.store.atomic import write_atomically, write_with
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import batches, chunks, fetch, rows_of, summary_of
from pipeline.inputs.config import RunConfig
from pipeline.errors import OutputError
from pipeline.inputs.manifest import Item, Manifest
from pipeline.outputs import arrow
from pipeline.outputs.renditions import rendition_columns

COLUMNS = ["id", "status", "image", "prompt", "order_id", "output_url", "output_path",
           "output_sha256", "error", "attempts", "credits", "submitted_at", "finished_at", "elapsed_s",
           "image_sha256", "fidelity", "fidelity_ssim", "fidelity_delta_e", "fidelity_iou", "fidelity_note",
           "review", "review_reason", "reviewed_at"]
FLOAT_COLUMNS = ("elapsed_s", "fidelity", "fidelity_ssim", "fidelity_delta_e", "fidelity_iou")
INT_COLUMNS = ("attempts", "credits")
PARQUET_BLOCK = 1 << 24  # bytes of CSV per row group of the Parquet twin
# Bytes of CSV per block the reader parses. It reads blocks ahead of the writer, and its memory grows
# with the block: on a 1M-row table, 16 MB blocks peaked at 500 MB more, 1 MB blocks at 150 MB.
READ_BLOCK = 1 << 20
STATUS = {"done": "done", "failed": "failed", "review": "review"}  # every other state is still `pending`


def by_variant(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> tuple[Manifest, dict[str, Row]]:
    """With variants: one entry per (item, variant), id ``{item}/{variant}``, its row the first step
    not done (else the last step), credits and attempts summed over its steps. Without: as given."""
    if not cfg.variants:
        return manifest, rows
    from pipeline.inputs.variants import step_id
    items, view = [], {}
    for chunk in chunks(manifest.items):  # each batch's step rows read at once, not one query a step
        found = rows_of(rows, [step_id(item.id, variant.name, k) for item in chunk for variant in cfg.variants
                               for k in range(len(variant.steps))])
        for item in chunk:
            _units_of(cfg, item, found, items, view)
    return dataclasses.replace(manifest, items=items), view


def _units_of(cfg: RunConfig, item: Item, rows: Mapping[str, Row], items: list, view: dict) -> None:
    """by_variant's entries of one item, appended to `items` and `view`."""
    from pipeline.inputs.variants import step_id
    for variant, name in zip(cfg.variants, item.output_names):
        unit = f"{item.id}/{variant.name}"
        items.append(dataclasses.replace(item, id=unit, output_name=name, output_names=()))
        steps = [rows.get(step_id(item.id, variant.name, k)) for k in range(len(variant.steps))]
        current = next((r for r in steps if r is None or r.state != "done"), steps[-1])
        if current is not None:
            view[unit] = dataclasses.replace(current, id=unit, credits=sum(r.credits for r in steps if r),
                                             attempts=sum(r.attempts for r in steps if r),
                                             image_sha256=(steps[0] or current).image_sha256)  # the source's


def status_of(row: Row | None) -> str:
    return STATUS.get(row.state, "pending") if row else "pending"


def status_counts(manifest: Manifest, rows: Mapping[str, Row]) -> Counter:
    counts = Counter({"done": 0, "failed": 0, "pending": 0, "review": 0})
    for chunk, found in batches(rows, manifest.items, ("state",)):
        for item in chunk:
            state = found.get(item.id)
            counts[STATUS.get(state[0], "pending") if state else "pending"] += 1
    counts["failed"] += len(manifest.invalid)
    return counts


def columns(manifest: Manifest, rows: Mapping[str, Row]) -> dict[str, list]:
    """The table as columns: one entry per current manifest item, invalid ones last, as failed."""
    cols = _columns(manifest.items, rows, manifest.columns)
    for bad in manifest.invalid:
        for name, values in cols.items():
            values.append(_invalid(bad, name))
    return cols


def _invalid(bad, name: str):
    return {"id": bad.id, "status": "failed", "error": "; ".join(bad.problems), "attempts": 0, "credits": 0}.get(name)


# What the table shows of a row, fetched as one tuple per row (no Row made): the indexes below.
_FIELDS = ("state", "order_id", "output_url", "output_path", "output_sha256", "error", "attempts", "credits",
           "submitted_at", "finished_at", "image_sha256", "fidelity", "fidelity_ssim", "fidelity_delta_e",
           "fidelity_iou", "fidelity_note", "review", "review_reason", "reviewed_at")
_SCORES = ("fidelity", "fidelity_ssim", "fidelity_delta_e", "fidelity_iou", "fidelity_note")


def _columns(items: Sequence[Item], rows: Mapping[str, Row], extra_columns: list[str]) -> dict[str, list]:
    """Columns of these items (a whole manifest's, or one batch's)."""
    found: dict[str, tuple] = {}
    for chunk in chunks(items):
        found.update(fetch(rows, [item.id for item in chunk], _FIELDS))
    return _columns_of(items, found, extra_columns)


def _columns_of(items: Sequence[Item], found: Mapping[str, tuple], extra_columns: list[str]) -> dict[str, list]:
    """Columns of these items from their rows' `_FIELDS` tuples (`found`, by id; no entry: no row)."""
    vals = [found.get(item.id) for item in items]
    done = [v is not None and v[0] in ("done", "review") for v in vals]  # a held output is on disk
    cols: dict[str, list] = {
        "id": [item.id for item in items],
        "status": [STATUS.get(v[0], "pending") if v is not None else "pending" for v in vals],
        "image": [item.image for item in items],
        "prompt": [item.prompt for item in items],
        "order_id": [v[1] if v is not None else None for v in vals],
        "output_url": [v[2] if v is not None else None for v in vals],
        "output_path": [v[3] if ok else None for v, ok in zip(vals, done)],
        "output_sha256": [v[4] if ok else None for v, ok in zip(vals, done)],
        "error": [v[5] if v is not None and not ok else None for v, ok in zip(vals, done)],
        "attempts": [v[6] if v is not None else 0 for v in vals],
        "credits": [v[7] if v is not None else 0 for v in vals],
        "submitted_at": [_iso(v[8]) if v is not None else None for v in vals],
        "finished_at": [_iso(v[9]) if v is not None else None for v in vals],
        "elapsed_s": [_elapsed(v) for v in vals],
        "image_sha256": [v[10] if v is not None else None for v in vals],  # the source's bytes
        **{name: [v[k] if ok else None for v, ok in zip(vals, done)] for k, name in enumerate(_SCORES, 11)},
        "review": [v[16] if v is not None else None for v in vals],
        "review_reason": [v[17] if v is not None else None for v in vals],
        "reviewed_at": [_iso(v[18]) if v is not None else None for v in vals],
    }
    for name in extra_columns:
        if name not in cols:
            cols[name] = [item.extra.get(name) for item in items]
    return cols


def table(manifest: Manifest, rows: dict[str, Row]):
    """The results table as a pandas DataFrame."""
    import pandas as pd  # imported here: half a second that validate and status do not need
    return pd.DataFrame(columns(manifest, rows))


def write(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], *, force: bool = False) -> Path:
    """Write results.csv and results.parquet under output.dir, each atomically; return the CSV path.

    When nothing they show has changed since they were last written (same manifest and config
    files, same checkpoint rows, both files as left), their bytes would come out the same: they are
    only touched, so their mtime still tells when the last run ended. On 100k items that saves
    seconds of a no-op rerun. `force` always rewrites them.
    """
    csv_path = cfg.output.dir / cfg.results_name
    parquet_path = csv_path.with_suffix(".parquet")
    stamp = cfg.state_dir / "results.stamp.json"
    extra = rendition_columns(cfg, manifest, rows)  # <name>_path per rendition
    digest = _inputs_digest(cfg, manifest, rows, extra)
    if not force and _touch_if_current(stamp, digest, (csv_path, parquet_path)):
        return csv_path
    with contextlib.suppress(OSError):
        stamp.unlink()  # gone until both files are whole again
    names = _names(cfg, manifest, extra)
    write_with(csv_path, lambda p: _write_csv(cfg, manifest, rows, extra, names, p))
    table_rows = len(manifest.items) + len(manifest.invalid)
    write_with(parquet_path, lambda p: _write_parquet(names, table_rows, csv_path, p))
    _save_stamp(stamp, digest, (csv_path, parquet_path))
    return csv_path


def _names(cfg: RunConfig, manifest: Manifest, extra: dict) -> list[str]:
    """The table's header: the columns, each rendition's path after output_path, the variant after id."""
    names = list(_columns([], {}, manifest.columns))
    at = names.index("output_path") + 1
    names[at:at] = list(extra)
    return ["id", "variant", *names[1:]] if cfg.variants else names


def _write_csv(cfg: RunConfig, manifest: Manifest, rows: Mapping[str, Row], extra: dict[str, list],
               names: list[str], path: str) -> None:
    """Plain CSV, quoted only where needed (pyarrow's writer quotes every string), written a batch
    of rows at a time as they are read from the checkpoint: a million rows are never all held."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        start = 0
        for chunk in chunks(manifest.items):
            cols = _columns_of(chunk, fetch(rows, [item.id for item in chunk], _FIELDS), manifest.columns)
            cols.update((name, values[start:start + len(chunk)]) for name, values in extra.items())
            start += len(chunk)
            if cfg.variants:  # "sku-1/lifestyle" -> id sku-1, variant lifestyle
                split = [unit.rsplit("/", 1) for unit in cols["id"]]
                cols["id"], cols["variant"] = [i for i, _ in split], [v for _, v in split]
            writer.writerows(zip(*(cols[name] for name in names)))
        writer.writerows([_invalid(bad, name) for name in names] for bad in manifest.invalid)


def _inputs_digest(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], extra: dict | None = None) -> str:
    """Everything the table is made of: the code version, the config, the manifest text the items
    were read from, the invalid items and when each current item's checkpoint row last changed."""
    digest = hashlib.sha256(f"{installed_version()}\n{cfg!r}\n{manifest.columns!r}\n{manifest.invalid!r}\n".encode())
    if manifest.sha256:
        digest.update(manifest.sha256.encode())
    else:  # built in code, not read from a file
        digest.update(repr([(i.id, i.image, i.prompt, i.extra) for i in manifest.items]).encode())
    if (summary := summary_of(rows)) is not None:  # every row of the checkpoint, summed up by SQLite
        digest.update(repr(summary).encode())
    else:
        for chunk, found in batches(rows, manifest.items, ("updated_at", "state")):
            digest.update(repr([found.get(i.id) for i in chunk]).encode())
    if extra:
        digest.update(repr(extra).encode())
    return digest.hexdigest()


def _touch_if_current(stamp: Path, digest: str, paths: tuple[Path, ...]) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        if recorded.get("digest") != digest:
            return False
        for path in paths:
            st = os.stat(path)
            if [st.st_size, st.st_mtime_ns] != recorded["files"].get(path.name):
                return False  # edited or replaced since: write it anew
        now = time.time_ns()
        for path in paths:
            os.utime(path, ns=(now, now))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    _save_stamp(stamp, digest, paths)
    return True


def _save_stamp(stamp: Path, digest: str, paths: tuple[Path, ...]) -> None:
    """Record what the table was made of; only a shortcut for the next run, so never an error."""
    with contextlib.suppress(OSError, OutputError):
        files = {path.name: [(st := os.stat(path)).st_size, st.st_mtime_ns] for path in paths}
        write_atomically(stamp, json.dumps({"digest": digest, "files": files}).encode())


def prewarm() -> None:
    """Import what the Parquet twin needs (0.07-0.2 s of CPU), in a thread while a run waits on orders."""
    arrow.load()


def _write_parquet(names: list[str], table_rows: int, csv_path: Path, path: str) -> None:
    """The Parquet twin of results.csv, read back from it by pyarrow's streaming CSV reader and
    written a block at a time (a row group each), so a million rows are never all in memory.

    Building the table from Python lists (pa.array) imports pandas, half a second of CPU a run
    never needs otherwise; the CSV reader does not. Types are set, never guessed: ids such as
    "007" stay strings. Empty cells are nulls, as pandas reads them.
    """
    arrow.load()
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    # Quoted line breaks need the reader's slow path (5x slower); a table with none has exactly
    # one CRLF per line, so that count tells.
    newlines = returns = 0
    with open(csv_path, "rb") as fh:
        while block := fh.read(1 << 24):
            newlines, returns = newlines + block.count(b"\n"), returns + block.count(b"\r")
    plain = newlines == returns == table_rows + 1
    types = {name: pa.string() for name in names}
    types.update({name: pa.int64() for name in INT_COLUMNS}, **{name: pa.float64() for name in FLOAT_COLUMNS})
    block = min(READ_BLOCK, PARQUET_BLOCK)
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=not plain),
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=names,
                                             strings_can_be_null=True, quoted_strings_can_be_null=True,
                                             null_values=[""]))
    with pq.ParquetWriter(path, reader.schema) as writer:
        group: list = []
        for batch in reader:  # a row group of about PARQUET_BLOCK bytes of CSV from its blocks
            group.append(batch)
            if len(group) * block >= PARQUET_BLOCK:
                _write_group(writer, pa.Table.from_batches(group))
                group = []
        if group:
            _write_group(writer, pa.Table.from_batches(group))
    pa.default_memory_pool().release_unused()  # the blocks' memory back to the system


def _write_group(writer, table) -> None:
    writer.write_table(table, row_group_size=max(table.num_rows, 1))


def _iso(ts: float | None) -> str | None:
    return _iso_second(int(ts)) if ts else None


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    """Cached: a big run finishes hundreds of items in the same second."""
    return datetime.fromtimestamp(second, timezone.utc).isoformat(timespec="seconds")


def _elapsed(values: tuple | None) -> float | None:
    """Seconds from submit to finish of a done row (its `_FIELDS` tuple)."""
    if values is None or not values[9] or not values[8] or values[0] != "done":
        return None
    return round(values[9] - values[8], 3)
