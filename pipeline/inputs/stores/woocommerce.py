"""WooCommerce's built-in product CSV export: one row per product or variation.

``Images`` lists the pictures, comma-separated, the first being the main one. A variation names its
parent in ``Parent`` (``id:102`` or the parent's SKU) and shares its parent's pictures: a variation
without a picture of its own adds nothing and is not a product without pictures.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.stores.model import Export, Picture, Product, snake_columns
from pipeline.inputs.stores.tables import split_urls, table
from pipeline.inputs.stores.text import plain_text

SIGNATURE = ("ID", "Type", "Name")


def matches(header: list[str]) -> bool:
    return all(name in header for name in SIGNATURE) and ("Images" in header or "SKU" in header)


def open_export(path: Path | str, shown: str, options: Mapping[str, Any] | None, header: list[str]) -> Export:
    missing = [name for name in ("ID", "Images") if name not in header]
    if "Images" in missing:
        raise ConfigError(f"{shown}: a WooCommerce export without the 'Images' column; export the products "
                          f"again with all columns")
    if missing:
        raise ConfigError(f"{shown}: a WooCommerce export without the 'ID' column, which the import matches on")
    names = snake_columns(header, shown)
    columns = list(dict.fromkeys(["title", "description", "brand", "product_type", "tags", "image_alt", *names]))
    return Export("woocommerce", "WooCommerce product CSV", columns, lambda: _products(path, shown, options))


def _products(path: Path | str, shown: str, options) -> Iterator[Product]:
    with table(path, shown, options) as (header, rows):
        names = snake_columns(header, shown)
        ids_by_sku: dict[str, str] = {}  # a variation may name its parent by SKU
        for number, cells in rows:
            key, sku = cells["ID"].strip(), cells.get("SKU", "").strip()
            if sku and key:
                ids_by_sku.setdefault(sku, key)
            is_variation = "variation" in cells.get("Type", "").lower()
            parent = cells.get("Parent", "").strip()
            parent = parent[3:] if parent.startswith("id:") else ids_by_sku.get(parent, parent)
            fields = {name: cells[column] for column, name in zip(header, names)}
            description = cells.get("Description", "").strip() or cells.get("Short description", "")
            fields.update(title=cells.get("Name", ""), description=plain_text(description),
                          brand=cells.get("Brands", cells.get("Brand", "")), product_type=cells.get("Categories", ""),
                          tags=cells.get("Tags", ""), image_alt="")
            pictures = [Picture(url, n) for n, url in enumerate(dict.fromkeys(split_urls(cells["Images"])), start=1)]
            problems = [] if key else ["the 'ID' cell is blank; the import matches products on it"]
            yield Product(key, number, fields, pictures, group=parent if is_variation and parent else key,
                          store={"ID": key, "SKU": sku}, problems=problems,
                          owned=not (is_variation and parent))
