"""Any other table: CSV, TSV, Parquet or JSON Lines, with `columns` naming the id and image columns.

    columns: {id: sku, image: main_image_url}     # in the config; title, prompt, ... may be named too

Every column is a template field under its own name and its snake_case name. One row is one
product with one picture.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.stores.model import TEMPLATE_FIELDS, Export, Picture, Product, snake
from pipeline.inputs.stores.tables import header_of, open_text, records, table

PARQUET_BATCH = 4096


def open_export(path: Path | str, shown: str, options: Mapping[str, Any] | None, header: list[str],
                columns: Mapping[str, str], kind: str) -> Export:
    mapping = {"id": "id", "image": "image", **columns}
    missing = [f"{shown}: has no {mapping[k]!r} column (the {k} column{' named in columns' if k in columns else ''})"
               for k in ("id", "image") if mapping[k] not in header]
    missing += [f"{shown}: has no {column!r} column (columns.{name})" for name, column in columns.items()
                if name not in ("id", "image") and column not in header]
    if missing:
        raise ConfigError(missing)
    names = list(dict.fromkeys([*TEMPLATE_FIELDS, *header, *(snake(h) for h in header), *columns]))
    label = {"csv": "CSV table", "parquet": "Parquet table", "jsonl": "JSON Lines table"}[kind]
    reader = {"csv": _csv_rows, "parquet": _parquet_rows, "jsonl": _jsonl_rows}[kind]
    return Export("plain", f"{label} (columns mapped in the config)", names,
                  lambda: (_product(cells, number, mapping) for number, cells in reader(path, shown, options)))


def _product(cells: dict[str, str], number: int, mapping: Mapping[str, str]) -> Product:
    fields = {**dict.fromkeys(TEMPLATE_FIELDS, ""), **{snake(k): v for k, v in cells.items()}, **cells}
    fields.update({name: cells.get(column, "") for name, column in mapping.items() if name not in ("id", "image")})
    key = cells.get(mapping["id"], "").strip()
    url = cells.get(mapping["image"], "").strip()
    return Product(key, number, fields, [Picture(url, 1)] if url else [], group=key, store={"id": key},
                   problems=[] if key else [f"the id ({mapping['id']!r}) is blank"])


def _csv_rows(path, shown, options) -> Iterator[tuple[int, dict[str, str]]]:
    with table(path, shown, options) as (_, rows):
        yield from rows


def _jsonl_rows(path, shown, options) -> Iterator[tuple[int, dict[str, str]]]:
    with open_text(path, shown, options) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{shown}: line {number}, column {exc.colno}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{shown}: line {number}: must be a JSON object, one per line")
            yield number, {str(k): _text(v) for k, v in record.items()}


def _parquet_rows(path, shown, options) -> Iterator[tuple[int, dict[str, str]]]:
    number = 0
    for batch in _parquet_file(path, shown, options).iter_batches(batch_size=PARQUET_BATCH):
        for record in batch.to_pylist():
            number += 1
            yield number, {str(k): _text(v) for k, v in record.items()}


def _parquet_file(path, shown, options):
    import pyarrow  # only Parquet exports pay for it
    import pyarrow.parquet as pq
    try:
        if isinstance(path, str):
            from pipeline.store.remote import Remote
            store = Remote.open(path, options)
            return pq.ParquetFile(store.fs.open(store.root, "rb"))
        return pq.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise ConfigError(f"{shown}: not a Parquet file that can be read ({exc})") from None


def header_of_jsonl(path, shown, options) -> list[str]:
    """The keys of the first object: what a `columns` mapping is checked against."""
    for _, cells in _jsonl_rows(path, shown, options):
        return list(cells)
    raise ConfigError(f"{shown}: the manifest is empty")


def header_of_parquet(path, shown, options) -> list[str]:
    return list(_parquet_file(path, shown, options).schema_arrow.names)


def header_of_csv(path, shown, options) -> list[str]:
    with open_text(path, shown, options) as handle:
        for _, record in records(handle, shown):
            return header_of(record, shown)
    raise ConfigError(f"{shown}: the manifest is empty; it needs a header row and items")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)
