"""Store exports at scale, for correctness only: a shard reading an export keeps its own items as the
products stream, and holds exactly what the whole export, filtered by shard, held (items, invalid rows,
the export's summary); its shards partition the export. Timings are in benchmarks/scale.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.inputs.validate import validate
from pipeline.plan.shards import Shard
from store_exports import MERCHANT_HEADER, WOO_HEADER, _write_csv, write_shopify

BASE = "https://cdn.example.com/files"
PRODUCTS = 3_000
SHARDS = 4


def _shopify(path: Path) -> dict:
    products = []
    for i in range(PRODUCTS):
        pictures = [(f"{BASE}/p{i}-{n}.jpg", f"view {n}") for n in range(i % 3)]  # every third has none
        variants = [(f"V{n}", f"SKU-{i}-{n}", pictures[n % len(pictures)][0] if pictures else "")
                    for n in range(1 + i % 2)]
        products.append({"handle": f"product-{i}", "Title": f"Product {i}", "Vendor": "Acme", "Type": "Things",
                         "Tags": "", "body": f"<p>number {i}</p>", "variants": variants, "pictures": pictures})
    products.append({**products[7], "Title": "again"})  # a handle used twice: refused on its own row
    write_shopify(path, BASE, "current", products)
    return {}


def _woocommerce(path: Path) -> dict:
    rows = []
    for i in range(PRODUCTS):
        if i % 5 == 1:  # a variable product and two variations sharing its picture, one naming its own
            rows.append({"ID": str(i), "Type": "variable", "SKU": f"VAR-{i}", "Name": f"Var {i}",
                         "Images": f"{BASE}/v{i}.jpg"})
            rows += [{"ID": f"{i}{n}00000", "Type": "variation", "SKU": f"VAR-{i}-{n}", "Name": f"Var {i} {n}",
                      "Parent": f"id:{i}" if n else f"VAR-{i}", "Images": f"{BASE}/v{i}.jpg" if n else ""}
                     for n in range(2)]
        else:
            rows.append({"ID": str(i), "Type": "simple", "SKU": f"S-{i}", "Name": f"Simple {i}",
                         "Images": ", ".join(f"{BASE}/s{i}-{n}.jpg" for n in range(i % 3))})
    rows.append({"ID": "7", "Type": "simple", "SKU": "S-7-again", "Name": "again", "Images": f"{BASE}/x.jpg"})
    _write_csv(path, WOO_HEADER, [{**dict.fromkeys(WOO_HEADER, ""), **r} for r in rows])
    return {}


def _merchant(path: Path) -> dict:
    rows = []
    for i in range(PRODUCTS):
        group = f"G{i // 3}"  # three items a group; the group's first picture is shared
        rows.append({"id": f"item-{i}" if i % 97 else f"ITEM-{i - 1}", "title": f"Item {i}",
                     "image_link": f"{BASE}/g{i // 3}.jpg" if i % 3 else f"{BASE}/i{i}.jpg",
                     "additional_image_link": f"{BASE}/a{i}.jpg" if i % 4 == 0 else "",
                     "item_group_id": group, "brand": "Acme"})
    _write_csv(path, MERCHANT_HEADER, [{**dict.fromkeys(MERCHANT_HEADER, ""), **r} for r in rows], delimiter="\t")
    return {}  # ITEM-96 and item-96 write the same file on macOS: a case collision between shards


def _plain(path: Path) -> dict:
    rows = [{"sku": f"K-{i}", "main_image_url": f"{BASE}/k{i % 50}.jpg", "Product Name": f"Thing {i}"}
            for i in range(PRODUCTS)]
    rows[40]["sku"] = "K-3"  # a duplicate id
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"columns": {"id": "sku", "image": "main_image_url", "title": "Product Name"}}


EXPORTS = {"shopify": ("products_export.csv", _shopify), "woocommerce": ("wc-product-export.csv", _woocommerce),
           "merchant": ("feed.tsv", _merchant), "plain": ("table.jsonl", _plain)}


@pytest.fixture(scope="module", params=list(EXPORTS))
def export(request, tmp_path_factory):
    name, write = EXPORTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    extra = write(root / name)
    return root, name, extra


@pytest.mark.parametrize("images", ["first", "all"])
def test_each_shard_of_an_export_holds_what_the_whole_export_filtered_held(export, images):
    root, name, extra = export
    config = root / f"catalog-{images}.yaml"
    config.write_text(yaml.safe_dump({"manifest": name, "prompt": "{title}", "output": {"dir": "out"},
                                      "store": {"images": images}, **extra}, sort_keys=False))
    _, whole, _ = validate(config, check_images=False)
    assert len(whole.items) > PRODUCTS / 2 and whole.invalid  # each export has a refused row
    seen: list[str] = []
    for k in range(SHARDS):
        shard = Shard(k, SHARDS)
        _, streamed, plan = validate(config, check_images=False, keep=shard.owner())
        selected = shard.select(whole)
        assert streamed.items == selected.items and streamed.items
        assert [i.extra for i in streamed.items] == [i.extra for i in selected.items]
        assert streamed.invalid == selected.invalid
        assert streamed.store == whole.store  # the summary counts the whole export, in every shard
        assert (streamed.columns, streamed.sha256) == (whole.columns, whole.sha256)
        assert plan.items == len(selected.items)
        seen += [i.id for i in streamed.items]
    assert sorted(seen) == sorted(i.id for i in whole.items)  # a partition: every item once, in one shard
