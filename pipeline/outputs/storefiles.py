"""The files that bring generated pictures back into the store: written beside results.csv.

    shopify-import.csv                 handle, Title, and every picture: existing at their positions, then new
    woocommerce-import.csv             ID, SKU, Images (existing URLs, then new), for "update existing products"
    merchant-center-supplemental.tsv   id and lifestyle_image_link (or additional_image_link)

Only done items are listed, each picture as ``output.public_url`` joined with its file name,
percent-encoded. The export is read again, product by product, through the same plan as the manifest
(inputs/stores/items), so both name the same items. A file whose bytes would not change is not
touched: a rerun leaves them as they are.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.inputs.files import display_path
from pipeline.inputs.settings import RunConfig
from pipeline.inputs.manifest import Manifest
from pipeline.inputs.stores import open_store
from pipeline.inputs.stores.items import Planned, plan
from pipeline.inputs.stores.shopify import HEADERS
from pipeline.store.atomic import write_atomically

log = logging.getLogger(__name__)
NAMES = {"shopify": "shopify-import.csv", "woocommerce": "woocommerce-import.csv",
         "merchant-center": "merchant-center-supplemental.tsv"}


@dataclass(frozen=True)
class StoreFile:
    name: str
    products: int   # products the file lists: those with at least one done item


def write(cfg: RunConfig, manifest: Manifest, done: dict[str, list[str]]) -> StoreFile | None:
    """Write the store's import file for `done` (item id -> output names of its done pictures), or None
    when the manifest is not a store export or output.public_url is not set."""
    if manifest.store is None or not cfg.output.public_url or manifest.store.format not in NAMES:
        return None
    export = open_store(cfg.manifest_path, display_path(cfg.manifest_path), cfg.store.format, cfg.columns,
                        cfg.storage.options)
    assert export is not None
    base = quote(cfg.output.public_url.rstrip("/"), safe=":/%@!$&'()*+,;=~")  # a space in it: %20
    urls = {item: [f"{base}/{quote(name, safe='/')}" for name in names] for item, names in done.items()}
    writer = {"shopify": _shopify, "woocommerce": _woocommerce, "merchant-center": _merchant}[export.format]
    buffer = io.StringIO(newline="")
    products = writer(cfg, export.generation, plan(export.products(), cfg.store.images), urls, buffer)
    name = NAMES[export.format]
    target = Path(cfg.output.dir) / name
    data = buffer.getvalue().encode("utf-8")
    try:
        unchanged = target.read_bytes() == data
    except OSError:
        unchanged = False
    if not unchanged:
        write_atomically(target, data)
    return StoreFile(name, products)


def _generated(planned: Planned, urls: dict[str, list[str]]) -> list[str]:
    """This product's done pictures, by the position of their source picture."""
    pairs = sorted(planned.own + planned.shared, key=lambda pair: pair[1].position)
    return [url for item, _ in pairs for url in urls.get(item, ())]


def _shopify(cfg: RunConfig, generation: str, planned_all: Iterator[Planned], urls, out) -> int:
    cols = HEADERS[generation or "current"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([cols["handle"], "Title", cols["image"], cols["position"], cols["alt"]])
    count = 0
    for planned in planned_all:
        new = _generated(planned, urls)
        if not new:
            continue
        product = planned.product
        title = product.store.get("title", "")
        alt = " ".join(title.split())  # the generated pictures' alt text
        existing = [(p.url, p.position, p.alt) for p in product.pictures]
        if cfg.store.position == "first":
            pictures = [(url, n, alt) for n, url in enumerate(new, start=1)]
            pictures += [(url, len(new) + n, alt) for n, (url, _, alt) in enumerate(existing, start=1)]
        else:
            last = max((position for _, position, _ in existing), default=0)
            pictures = existing + [(url, last + n, alt) for n, url in enumerate(new, start=1)]
        for i, (url, position, alt) in enumerate(pictures):
            writer.writerow([product.key, title if i == 0 else "", url, position, alt])
        count += 1
    return count


def _woocommerce(cfg: RunConfig, generation: str, planned_all: Iterator[Planned], urls, out) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ID", "SKU", "Images"])
    count = 0
    for planned in planned_all:
        if not planned.product.owned and not planned.own:
            continue  # a variation showing its parent's picture: the parent's row carries it
        new = _generated(planned, urls)
        if not new:
            continue
        existing = [p.url for p in planned.product.pictures]
        images = new + existing if cfg.store.position == "first" else existing + new
        writer.writerow([planned.product.store.get("ID", ""), planned.product.store.get("SKU", ""), ", ".join(images)])
        count += 1
    return count


def _merchant(cfg: RunConfig, generation: str, planned_all: Iterator[Planned], urls, out) -> int:
    attribute = cfg.store.merchant_attribute
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["id", attribute])
    count = 0
    for planned in planned_all:
        new = _generated(planned, urls)
        if not new:
            continue
        # A supplemental feed replaces the attribute: the feed's own values stay, before the new ones.
        existing = [u for u in planned.product.store.get(attribute, "").split(",") if u]
        writer.writerow([planned.product.store.get("id", planned.product.key), ",".join(existing + new)])
        count += 1
    return count


def done_pictures(manifest: Manifest, rows: dict) -> dict[str, list[str]]:
    """Item id -> the output names of its done pictures (with variants: one per done variant, in order).
    `manifest` and `rows` as `results.by_variant` gives them: an entry's id is ``item`` or ``item/variant``."""
    done: dict[str, list[str]] = {}
    for item in manifest.items:
        row = rows.get(item.id)
        if row is not None and row.state == "done":
            done.setdefault(item.id.split("/", 1)[0], []).append(item.output_name)
    return done
