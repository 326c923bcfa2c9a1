"""Google Merchant Center feeds: the text feed (TSV or CSV) and the XML feed (RSS 2.0 or Atom, g: namespace).

Each feed item is a product, its id the feed's ``id``. Variants of one product (same
``item_group_id``) often share a picture; a shared picture is one item (see stores.items).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.stores.model import Export, Picture, Product, snake_columns
from pipeline.inputs.stores.tables import open_text, split_urls, table
from pipeline.inputs.stores.text import plain_text

G = "http://base.google.com/ns/1.0"
ATOM = "http://www.w3.org/2005/Atom"
COLUMNS = ["title", "description", "brand", "product_type", "tags", "image_alt"]
# An XML feed has no header: these are the attributes a template may name (an item lacking one gets "").
FEED_ATTRIBUTES = ["id", "link", "image_link", "additional_image_link", "lifestyle_image_link",
                   "google_product_category", "item_group_id", "price", "sale_price", "availability",
                   "condition", "gtin", "mpn", "color", "size", "material", "pattern", "gender", "age_group"]


def matches(header: list[str]) -> bool:
    names = {h.lower() for h in header}
    return "id" in names and "image_link" in names


def open_export(path: Path | str, shown: str, options: Mapping[str, Any] | None, header: list[str]) -> Export:
    names = [h.lower() for h in header]
    if "id" not in names:
        raise ConfigError(f"{shown}: a Merchant Center feed without the 'id' column")
    if "image_link" not in names:
        raise ConfigError(f"{shown}: a Merchant Center feed without the 'image_link' column (pictures)")
    columns = list(dict.fromkeys([*COLUMNS, *snake_columns(header, shown)]))
    return Export("merchant-center", "Google Merchant Center text feed", columns,
                  lambda: _text_products(path, shown, options))


def open_xml(path: Path | str, shown: str, options: Mapping[str, Any] | None, root: str) -> Export:
    label = "Google Merchant Center XML feed (Atom)" if root == "feed" else "Google Merchant Center XML feed (RSS 2.0)"
    return Export("merchant-center", label, [*COLUMNS, *FEED_ATTRIBUTES], lambda: _xml_products(path, shown, options))


def _product(values: dict[str, list[str]], number: int) -> Product:
    one = {**dict.fromkeys(FEED_ATTRIBUTES, ""), **{name: vals[0] if vals else "" for name, vals in values.items()}}
    key = one.get("id", "").strip()
    urls = [one.get("image_link", "").strip()] + [
        url for cell in values.get("additional_image_link", []) for url in split_urls(cell)]
    urls = [u for u in dict.fromkeys(urls) if u]
    fields = {**one, "title": one.get("title", ""),
              "description": plain_text(one.get("description", "")), "brand": one.get("brand", ""),
              "product_type": one.get("product_type", ""), "tags": "", "image_alt": ""}
    extra = [url for cell in values.get("additional_image_link", []) for url in split_urls(cell)]
    lifestyle = [url for cell in values.get("lifestyle_image_link", []) for url in split_urls(cell)]
    problems = [] if key else ["the 'id' is blank"]
    if len(key) > 50:
        problems.append(f"the id {key[:50]!r}... is longer than 50 characters, Merchant Center's limit")
    return Product(key, number, fields, [Picture(u, n) for n, u in enumerate(urls, start=1)],
                   group=one.get("item_group_id", "").strip() or key,
                   store={"id": key, "additional_image_link": ",".join(extra),
                          "lifestyle_image_link": ",".join(lifestyle)}, problems=problems)


def _text_products(path: Path | str, shown: str, options) -> Iterator[Product]:
    with table(path, shown, options) as (header, rows):
        names = snake_columns(header, shown)
        for number, cells in rows:
            yield _product({name: [cells[column]] for column, name in zip(header, names)}, number)


def _xml_products(path: Path | str, shown: str, options) -> Iterator[Product]:
    """One <item> (RSS) or <entry> (Atom) at a time; each is dropped once read."""
    with open_text(path, shown, options) as handle:
        number = 0
        try:
            for _, element in ET.iterparse(handle, events=("end",)):
                if element.tag not in ("item", f"{{{ATOM}}}entry"):
                    continue
                number += 1
                plain: dict[str, list[str]] = {}
                ours: dict[str, list[str]] = {}  # g:title wins over RSS's own <title>
                for child in element:
                    namespaced = child.tag.startswith("{" + G)
                    name = child.tag.rsplit("}", 1)[-1]
                    text = child.get("href") if name == "link" and child.get("href") else \
                        "".join(child.itertext()).strip()
                    (ours if namespaced else plain).setdefault(name, []).append(text)
                values = {**plain, **ours}
                element.clear()
                yield _product(values, number)
        except ET.ParseError as exc:
            line, column = exc.position
            raise ConfigError(f"{shown}: line {line}, column {column + 1}: the XML feed does not parse "
                              f"({str(exc).split(':')[0]})") from None
