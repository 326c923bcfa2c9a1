"""What every store reader yields: products with their pictures, in the export's order.

    >>> p = Product("mug", row=2, fields={"title": "Mug"}, pictures=[Picture("https://cdn/m.jpg", 1, "")])
    >>> p.pictures[0].position
    1

A reader is a generator: it holds one product (Shopify: one handle's rows) at a time, plus the few
keys it needs to tell a duplicate or a variant's parent, so a shard can keep only its own share.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from pipeline.errors import ConfigError


class Picture(NamedTuple):
    url: str
    position: int   # 1 = the main picture
    alt: str = ""
    row: int = 0    # the record that names it, where that is not the product's first (Shopify's picture rows)


@dataclass
class Product:
    """One product (or variant row that stands alone) of an export."""
    key: str                          # the store's id: Shopify handle, WooCommerce ID, the feed's id
    row: int                          # where it starts: CSV record (header = row 1) or XML line
    fields: dict[str, str]            # template fields: title, description, ... and every column as snake_case
    pictures: list[Picture] = field(default_factory=list)
    group: str = ""                   # pictures are shared inside a group (variants of one product)
    store: dict[str, str] = field(default_factory=dict)  # what the import files need (ID, SKU, Title, ...)
    problems: list[str] = field(default_factory=list)     # this product cannot run, e.g. a bad picture cell
    owned: bool = True                # False: a variation whose pictures (if any) belong to its parent


@dataclass
class Export:
    """An opened export: its format, its columns, and a fresh stream of its products."""
    format: str                       # shopify | woocommerce | merchant-center | plain
    label: str                        # how validate names it, e.g. "Shopify product CSV (current headers)"
    columns: list[str]                # template names every product has (snake_case)
    products: Callable[[], Iterator[Product]]
    generation: str = ""              # Shopify: "older" | "current"


TEMPLATE_FIELDS = ("title", "description", "brand", "product_type", "tags", "image_alt")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def snake(name: str) -> str:
    """``Body (HTML)`` -> ``body_html``; ``Option1 Value`` -> ``option1_value``."""
    return _NON_WORD.sub("_", name.strip().lower()).strip("_")


def snake_columns(header: list[str], shown: str) -> list[str]:
    """Each header name as snake_case; two names that become one are a file-level error."""
    names = [snake(h) for h in header]
    seen: dict[str, str] = {}
    problems = []
    for original, name in zip(header, names):
        if name in seen and name:
            problems.append(f"{shown}: columns {seen[name]!r} and {original!r} are both {{{name}}} in templates; "
                            f"rename one")
        seen.setdefault(name, original)
    if problems:
        raise ConfigError(problems)
    return names

