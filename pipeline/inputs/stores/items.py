"""Products -> items: which pictures become items, under which ids, and what each item's row holds.

    store.images: first   one item per product, its main picture; the id is the product's
    store.images: all     one item per distinct picture; the id is ``{product id}-{position}``

A picture URL that several products of one group use (variants of one product) is one item: the
first product to show it owns it, the others share its output. A product without pictures is
skipped: listed, never an item. The import files walk the same plan, so they name the same items.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from pipeline.inputs.stores.model import TEMPLATE_FIELDS, Picture, Product

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Planned(NamedTuple):
    product: Product
    own: list[tuple[str, Picture]]     # items this product owns: (item id, picture)
    shared: list[tuple[str, Picture]]  # pictures another product of its group owns, with that item's id


@dataclass
class StoreSummary:
    """What validate says it read: the format, products, pictures, products without a picture."""
    format: str
    label: str
    shown: str = ""                   # the export as messages name it
    generation: str = ""
    products: int = 0
    pictures: int = 0
    skipped: list[tuple[str, int]] = field(default_factory=list)  # (product id, row) without a picture

    def lines(self) -> list[str]:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"
        head = (f"{self.shown}: {self.label} · {n(self.products, 'product')} · {n(self.pictures, 'picture')} · "
                f"{len(self.skipped)} without a picture")
        if not self.skipped:
            return [head]
        shown_ids = ", ".join(key or f"row {row}" for key, row in self.skipped[:10])
        more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
        return [head, f"skipped (no picture, nothing spent): {shown_ids}{more}"]

    def as_dict(self) -> dict:
        return {"format": self.format, "label": self.label, "products": self.products, "pictures": self.pictures,
                "without_picture": [key for key, _ in self.skipped]}


def item_id(key: str) -> str:
    """A store id as an item id (it becomes a file name): accents dropped (café -> cafe), any other
    character than A-Z a-z 0-9 . _ - becomes _. Two ids that become one are reported as a duplicate."""
    if not _UNSAFE.search(key):
        return key
    ascii_key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode()
    return _UNSAFE.sub("_", ascii_key).strip("_") or "_"


def plan(products: Iterable[Product], images: str = "first") -> Iterator[Planned]:
    """Each product with the items it owns and the ones it shares, in the export's order."""
    owners: dict[tuple[str, str], str] = {}  # (group, picture URL) -> item id
    for product in products:
        if product.problems or not product.pictures:
            yield Planned(product, [], [])
            continue
        chosen = product.pictures[:1] if images == "first" else product.pictures
        own, shared = [], []
        for picture in chosen:
            claimed = owners.get((product.group, picture.url))
            if claimed is not None:
                shared.append((claimed, picture))
                continue
            name = item_id(product.key) if images == "first" else f"{item_id(product.key)}-{picture.position}"
            owners[(product.group, picture.url)] = name
            own.append((name, picture))
        yield Planned(product, own, shared)


def rows(export_products: Iterable[Product], images: str, summary: StoreSummary
         ) -> Iterator[tuple[int, dict[str, str] | None, list[str]]]:
    """Manifest rows (row, cells or None, problems) of every item; counts go to `summary`."""
    seen: set[tuple[str, str]] = set()
    first_rows: dict[str, int] = {}  # product id -> its row: a second product with that id is refused
    for planned in plan(export_products, images):
        product = planned.product
        if product.problems:
            named = f"product {product.key!r}: " if product.key else ""
            yield product.row, None, [named + problem for problem in product.problems]
            continue
        if (first := first_rows.setdefault(product.key, product.row)) != product.row:
            yield product.row, None, [f"duplicate id {product.key!r}: a product with this id begins on row {first}"
                                      f" (a product's rows must be together, and ids unique)"]
            continue
        if product.owned or planned.own:
            summary.products += 1
        for picture in product.pictures:
            if (product.group, picture.url) not in seen:
                seen.add((product.group, picture.url))
                summary.pictures += 1
        if not product.pictures and product.owned:
            summary.skipped.append((product.key, product.row))
            continue
        fields = {**product.fields, **{k: " ".join(product.fields.get(k, "").split()) for k in TEMPLATE_FIELDS}}
        for name, picture in planned.own:
            yield picture.row or product.row, {**fields, "id": name, "image": picture.url, "product_id": product.key,
                                "position": str(picture.position),
                                "image_alt": " ".join(picture.alt.split()) or fields["image_alt"]}, []
