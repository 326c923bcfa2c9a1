"""Store import files from real runs against the sandbox, with pictures served from 127.0.0.1:
read back and compared with the export, product by product."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import child_env, pipeline_cmd
from store_exports import (read_csv, write_merchant_tsv, write_merchant_xml,
                           write_shopify, write_woocommerce)

PUBLIC = "https://cdn.example.com/ai pictures"   # a space: the files must percent-encode it
PUBLIC_ENCODED = "https://cdn.example.com/ai%20pictures"


def setup(root: Path, base_url: str, name: str, write, **store) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root / name)
    doc = {"manifest": name, "prompt": "{title} on a marble counter", "store": store,
           "output": {"dir": "out", "public_url": PUBLIC}, "poll": {"interval_s": 0.05},
           "api": {"base_url": base_url}, "retries": {"backoff_base_s": 0.01, "backoff_max_s": 0.2}}
    (root / "catalog.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "catalog.yaml"


def run(config: Path) -> dict:
    done = subprocess.run(pipeline_cmd("run", str(config), "--json"), env=child_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def shopify_pictures(rows: list[dict], gen: str) -> dict[str, list[tuple[str, int]]]:
    """handle -> [(picture URL, position)] of a Shopify CSV of either generation."""
    handle, image, position = (("Handle", "Image Src", "Image Position") if gen == "older"
                               else ("URL handle", "Product image URL", "Image position"))
    found: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        if row[image]:
            found.setdefault(row[handle], []).append((row[image], int(row[position])))
    return found


@pytest.mark.parametrize("gen", ["current", "older"])
def test_shopify_import_keeps_every_picture_and_adds_the_new_one_after(tmp_path, sandbox, pictures, gen):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv",
                   lambda p: write_shopify(p, f"{pictures.base}/img", gen))
    summary = run(config)
    assert (summary["exit_code"], summary["counts"]["done"], summary["credits"]) == (0, 3, 3)
    assert summary["store_files"] == {"shopify-import.csv": 3}
    export = read_csv(root / "products_export.csv")
    imported = read_csv(root / "out" / "shopify-import.csv")
    assert list(imported[0]) == (["Handle", "Title", "Image Src", "Image Position", "Image Alt Text"] if gen == "older"
                                 else ["URL handle", "Title", "Product image URL", "Image position", "Image alt text"])
    before, after = shopify_pictures(export, gen), shopify_pictures(imported, gen)
    assert set(after) == {"ceramic-mug", "glass-vase", "desk-lamp"}  # the gift card has no picture
    for handle, existing in after.items():
        assert existing[:-1] == before[handle]  # every existing picture, at its position
        assert existing[-1] == (f"{PUBLIC_ENCODED}/{handle}.jpg", len(before[handle]) + 1)
    titles = {row["Title"] for row in imported if row["Title"]}
    assert titles == {'Ceramic Mug, "Classic"', "Glass Vase", "Desk Lamp"}  # on each product's first row
    first = (root / "out" / "shopify-import.csv").read_bytes()
    mtime = (root / "out" / "shopify-import.csv").stat().st_mtime_ns

    again = run(config)  # a rerun: nothing bought, the file untouched
    assert (again["credits"], again["submits"], again["store_files"]) == (0, 0, {"shopify-import.csv": 3})
    assert (root / "out" / "shopify-import.csv").read_bytes() == first
    assert (root / "out" / "shopify-import.csv").stat().st_mtime_ns == mtime


def test_every_picture_and_position_first(tmp_path, sandbox, pictures):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv",
                   lambda p: write_shopify(p, f"{pictures.base}/img"), images="all", position="first")
    summary = run(config)
    assert (summary["exit_code"], summary["credits"]) == (0, 4)
    after = shopify_pictures(read_csv(root / "out" / "shopify-import.csv"), "current")
    before = shopify_pictures(read_csv(root / "products_export.csv"), "current")
    mug = after["ceramic-mug"]
    assert mug[:2] == [(f"{PUBLIC_ENCODED}/ceramic-mug-1.jpg", 1), (f"{PUBLIC_ENCODED}/ceramic-mug-2.jpg", 2)]
    assert [url for url, _ in mug[2:]] == [url for url, _ in before["ceramic-mug"]]
    assert [position for _, position in mug] == [1, 2, 3, 4]


def test_woocommerce_import_lists_existing_then_generated(tmp_path, sandbox, pictures):
    root = tmp_path / "woo"
    config = setup(root, sandbox.base_url, "wc-product-export.csv",
                   lambda p: write_woocommerce(p, f"{pictures.base}/img"))
    summary = run(config)
    assert (summary["exit_code"], summary["credits"], summary["store_files"]) == (0, 3, {"woocommerce-import.csv": 3})
    export = {row["ID"]: row for row in read_csv(root / "wc-product-export.csv")}
    imported = read_csv(root / "out" / "woocommerce-import.csv")
    assert [row["ID"] for row in imported] == ["101", "102", "106"]
    for row in imported:
        assert row["SKU"] == export[row["ID"]]["SKU"]
        existing = [u.strip() for u in export[row["ID"]]["Images"].split(",")]
        assert row["Images"].split(", ") == existing + [f"{PUBLIC_ENCODED}/{row['ID']}.jpg"]


@pytest.mark.parametrize("xml", [False, True])
def test_merchant_supplemental_feed(tmp_path, sandbox, pictures, xml):
    root = tmp_path / "feed"
    name = "feed.xml" if xml else "feed.tsv"
    writer = (lambda p: write_merchant_xml(p, f"{pictures.base}/img")) if xml else \
        (lambda p: write_merchant_tsv(p, f"{pictures.base}/img"))
    summary = run(setup(root, sandbox.base_url, name, writer))
    assert (summary["exit_code"], summary["credits"]) == (0, 2)
    rows = read_csv(root / "out" / "merchant-center-supplemental.tsv", delimiter="\t")
    # MUG-G shows MUG-B's picture (one item, one credit); both variants get the generated one.
    assert [(r["id"], r["lifestyle_image_link"]) for r in rows] == [
        ("MUG-B", f"{PUBLIC_ENCODED}/MUG-B.jpg"), ("MUG-G", f"{PUBLIC_ENCODED}/MUG-B.jpg"),
        ("LAMP", f"{PUBLIC_ENCODED}/LAMP.jpg")]


def test_additional_image_link_keeps_the_feeds_own(tmp_path, sandbox, pictures):
    root = tmp_path / "feed"
    base = f"{pictures.base}/img"
    summary = run(setup(root, sandbox.base_url, "feed.tsv", lambda p: write_merchant_tsv(p, base),
                        merchant_attribute="additional_image_link"))
    assert summary["exit_code"] == 0
    rows = read_csv(root / "out" / "merchant-center-supplemental.tsv", delimiter="\t")
    assert rows[0] == {"id": "MUG-B", "additional_image_link": f"{base}/mug-green.jpg,{PUBLIC_ENCODED}/MUG-B.jpg"}


def test_a_missing_picture_fails_that_item_only(tmp_path, sandbox, pictures):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv",
                   lambda p: write_shopify(p, f"{pictures.base}/img"))
    export = (root / "products_export.csv").read_text()
    (root / "products_export.csv").write_text(export.replace("/img/lamp.jpg", "/img/gone.jpg"))
    summary = run(config)
    assert (summary["exit_code"], summary["counts"]) == (1, {"done": 2, "failed": 1, "pending": 0, "review": 0})
    results = {row["id"]: row for row in read_csv(root / "out" / "results.csv")}
    assert "404" in results["desk-lamp"]["error"]
    handles = {row["URL handle"] for row in read_csv(root / "out" / "shopify-import.csv")}
    assert handles == {"ceramic-mug", "glass-vase"}  # failed items are left out
    assert summary["store_files"] == {"shopify-import.csv": 2}


def test_no_public_url_no_import_file(tmp_path, sandbox, pictures):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv", lambda p: write_shopify(p, f"{pictures.base}/img"))
    doc = yaml.safe_load(config.read_text())
    del doc["output"]["public_url"]
    config.write_text(yaml.safe_dump(doc))
    assert run(config)["store_files"] == {}
    assert not (root / "out" / "shopify-import.csv").exists()



def test_a_refreshed_export_rebuys_only_what_changed(tmp_path, sandbox, pictures):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv", lambda p: write_shopify(p, f"{pictures.base}/img"))
    assert run(config)["credits"] == 3
    export = (root / "products_export.csv").read_text()
    changed = export.replace("Desk Lamp", "Brass Desk Lamp").replace("/img/vase.png", "/img/mug-green.jpg")
    (root / "products_export.csv").write_text(changed)  # the lamp's title, the vase's picture
    again = run(config)
    assert (again["credits"], again["counts"]["done"]) == (2, 3)
    rows = {row["URL handle"]: row for row in read_csv(root / "out" / "shopify-import.csv") if row["Title"]}
    assert rows["desk-lamp"]["Title"] == "Brass Desk Lamp"


def test_import_file_beside_results_in_a_bucket(tmp_path, sandbox, pictures, s3):
    s3.client.create_bucket(Bucket="shop")
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv", lambda p: write_shopify(p, f"{pictures.base}/img"))
    doc = yaml.safe_load(config.read_text())
    doc["output"]["dir"] = "s3://shop/generated"
    doc["state"] = {"dir": "state"}
    config.write_text(yaml.safe_dump(doc))
    done = subprocess.run(pipeline_cmd("run", str(config), "--json"), env=child_env(**s3.env), capture_output=True,
                          text=True, timeout=120)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert (summary["exit_code"], summary["store_files"]) == (0, {"shopify-import.csv": 3}), done.stderr
    assert "generated/shopify-import.csv" in s3.keys("shop")
    body = s3.get("shop", "generated/shopify-import.csv")["Body"].read().decode()
    assert f"{PUBLIC_ENCODED}/desk-lamp.jpg" in body


def test_store_rendition_links_that_rendition_of_each_picture(tmp_path, sandbox, pictures):
    root = tmp_path / "shop"
    config = setup(root, sandbox.base_url, "products_export.csv",
                   lambda p: write_shopify(p, f"{pictures.base}/img", "current"), rendition="square")
    doc = yaml.safe_load(config.read_text())
    doc["output"]["renditions"] = [{"name": "square", "format": "webp", "size": 64}]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    summary = run(config)
    assert (summary["exit_code"], summary["counts"]["done"]) == (0, 3)
    after = shopify_pictures(read_csv(root / "out" / "shopify-import.csv"), "current")
    for handle, existing in after.items():
        assert existing[-1][0] == f"{PUBLIC_ENCODED}/square/{handle}.webp"
        assert (root / "out" / "square" / f"{handle}.webp").is_file()
    doc["store"]["rendition"] = "grid"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = subprocess.run(pipeline_cmd("validate", str(config)), env=child_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "store.rendition: 'grid' is not one of output.renditions (square)" in done.stderr
