"""Shopify's product CSV, both header generations: one product spans the rows sharing its handle.

The first row of a product carries Title, the description, Vendor, Type and Tags; continuation rows
leave them blank and add variants and pictures. A product's rows are consecutive in every export
Shopify writes, so one product is held at a time; a handle seen again later is a second product
with the same id, which the manifest reports as a duplicate.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.stores.model import Export, Picture, Product, snake_columns
from pipeline.inputs.stores.tables import table
from pipeline.inputs.stores.text import plain_text

# generation -> our name -> its column. Title, Vendor, Type and Tags are the same in both.
HEADERS = {
    "older": {"handle": "Handle", "description": "Body (HTML)", "image": "Image Src",
              "position": "Image Position", "alt": "Image Alt Text", "variant_image": "Variant Image",
              "sku": "Variant SKU"},
    "current": {"handle": "URL handle", "description": "Description", "image": "Product image URL",
                "position": "Image position", "alt": "Image alt text", "variant_image": "Variant image URL",
                "sku": "SKU"},
}
PRODUCT_COLUMNS = ("Title", "Vendor", "Type", "Tags")


def generation(header: list[str]) -> str | None:
    """'older' or 'current' when the header is a Shopify product CSV's, else None."""
    names = set(header)
    for name, columns in HEADERS.items():
        if columns["handle"] in names and "Title" in names:
            return name
    return None


def open_export(path: Path | str, shown: str, options: Mapping[str, Any] | None, header: list[str]) -> Export:
    gen = generation(header)
    if gen is None:
        raise ConfigError(f"{shown}: is not a Shopify product CSV: it needs 'Handle' (or 'URL handle') and "
                          f"'Title' columns")
    cols = HEADERS[gen]
    if cols["image"] not in header and cols["variant_image"] not in header:
        raise ConfigError(f"{shown}: a Shopify export without a picture column ({cols['image']!r}); "
                          f"export the products again with their images")
    names = snake_columns(header, shown)
    return Export("shopify", f"Shopify product CSV ({gen} headers)", _columns(names), lambda: _products(path, shown, options, cols), gen)


def _columns(names: list[str]) -> list[str]:
    return list(dict.fromkeys(["title", "description", "brand", "product_type", "tags", "image_alt", *names]))


def _products(path: Path | str, shown: str, options, cols: dict[str, str]) -> Iterator[Product]:
    with table(path, shown, options) as (header, rows):
        names = snake_columns(header, shown)
        current: Product | None = None
        variants: dict[str, int] = {}  # a variant's own picture -> the row that names it first
        for number, cells in rows:
            handle_cell = cells[cols["handle"]].strip()
            if current is not None and handle_cell != current.key:
                yield _finished(current, variants)
                current, variants = None, {}
            if not handle_cell:
                yield Product("", number, {}, problems=[
                    f"the handle ({cols['handle']!r}) is blank: every row of a product repeats its handle"])
                continue
            if current is None:
                current = _start(handle_cell, number, cells, header, names, cols)
            _add_picture(current, cells, cols, number)
            if variant := cells.get(cols["variant_image"], "").strip():
                variants.setdefault(variant, number)
        if current is not None:
            yield _finished(current, variants)


def _start(key: str, number: int, cells: dict[str, str], header: list[str], names: list[str],
           cols: dict[str, str]) -> Product:
    fields = {name: cells[column] for column, name in zip(header, names)}
    fields.update(title=cells.get("Title", ""), description=plain_text(cells.get(cols["description"], "")),
                  brand=cells.get("Vendor", ""), product_type=cells.get("Type", ""), tags=cells.get("Tags", ""),
                  image_alt="")
    return Product(key, number, fields, group=key,
                   store={"handle": key, "title": cells.get("Title", ""), "sku": cells.get(cols["sku"], "")})


def _add_picture(product: Product, cells: dict[str, str], cols: dict[str, str], number: int) -> None:
    """Row `number`'s picture at its position; a URL already seen is the same picture."""
    url = cells.get(cols["image"], "").strip()
    if not url or any(p.url == url for p in product.pictures):
        return
    cell = cells.get(cols["position"], "").strip()
    position = int(cell) if cell.isdigit() and int(cell) > 0 else 0
    if position == 0 or any(p.position == position for p in product.pictures):
        position = max((p.position for p in product.pictures), default=0) + 1
    product.pictures.append(Picture(url, position, cells.get(cols["alt"], "").strip(), number))


def _finished(product: Product, variants: dict[str, int]) -> Product:
    """Pictures by position, then variants' own pictures that no picture row lists; alt of the main one."""
    product.pictures.sort(key=lambda p: p.position)
    known = {p.url for p in product.pictures}
    for url, number in variants.items():
        if url not in known:
            product.pictures.append(Picture(url, max((p.position for p in product.pictures), default=0) + 1,
                                            row=number))
    if product.pictures:
        product.fields["image_alt"] = product.pictures[0].alt
    return product
