"""Store exports as manifests: Shopify, WooCommerce, Google Merchant Center, and mapped plain tables.

`detect.open_store` recognises the format; each format's reader streams `model.Product`s;
`items` turns products into manifest rows. `inputs/manifest.py` calls `read_rows` at one point.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

from pipeline.inputs.stores.detect import FORMATS, open_store
from pipeline.inputs.stores.items import StoreSummary, rows
from pipeline.inputs.stores.model import Export

__all__ = ["FORMATS", "Export", "StoreSummary", "digest", "open_store", "read_rows", "STORE_COLUMNS"]
STORE_COLUMNS = ("product_id", "position")  # added to every item's row beside the export's own


def digest(path: Path | str, options: Mapping[str, Any] | None = None) -> str:
    """sha256 of the export's bytes, read in blocks."""
    if isinstance(path, str):
        from pipeline.store.remote import Remote
        store = Remote.open(path, options)
        return hashlib.sha256(store.fs.cat_file(store.root)).hexdigest()
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_rows(export: Export, images: str, shown: str = "") -> tuple[StoreSummary, Iterator[tuple[int, dict[str, str] | None, list[str]]]]:
    """The summary (filled as the rows are read) and the rows of every item."""
    summary = StoreSummary(export.format, export.label, shown, export.generation)
    return summary, rows(export.products(), images, summary)
