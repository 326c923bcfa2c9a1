"""Store exports as manifests: detection, products and pictures, prompts, and every bad input in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.inputs.validate import validate
from pipeline.inputs.stores.text import plain_text
from store_exports import (read_csv, write_merchant_tsv, write_merchant_xml, write_shopify, write_woocommerce,
                           WOO_HEADER, MERCHANT_HEADER, SHOPIFY_CURRENT, _write_csv)

BASE = "https://cdn.example.com/files"
PROMPT = "{title} by {brand}, {product_type}"


def config(root: Path, manifest: str, **extra) -> Path:
    doc = {"manifest": manifest, "prompt": PROMPT, "output": {"dir": "out"}, **extra}
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


WRITERS = {
    "shopify-current": ("products_export.csv", lambda p: write_shopify(p, BASE, "current"),
                        "Shopify product CSV (current headers)"),
    "shopify-older": ("products_export.csv", lambda p: write_shopify(p, BASE, "older"),
                      "Shopify product CSV (older headers)"),
    "woocommerce": ("wc-product-export.csv", lambda p: write_woocommerce(p, BASE), "WooCommerce product CSV"),
    "merchant-tsv": ("feed.tsv", lambda p: write_merchant_tsv(p, BASE), "Google Merchant Center text feed"),
    "merchant-rss": ("feed.xml", lambda p: write_merchant_xml(p, BASE, "rss"),
                     "Google Merchant Center XML feed (RSS 2.0)"),
    "merchant-atom": ("feed.xml", lambda p: write_merchant_xml(p, BASE, "atom"),
                      "Google Merchant Center XML feed (Atom)"),
}
# format -> (item ids with store.images: first, with all, products, pictures, the product without a picture)
EXPECTED = {
    "shopify": (["ceramic-mug", "glass-vase", "desk-lamp"], ["ceramic-mug-1", "ceramic-mug-2", "glass-vase-1",
                                                             "desk-lamp-1"], 4, 4, "gift-card"),
    "woocommerce": (["101", "102", "106"], ["101-1", "101-2", "102-1", "106-1"], 4, 4, "105"),
    "merchant": (["MUG-B", "LAMP"], ["MUG-B-1", "MUG-B-2", "LAMP-1"], 4, 3, "CARD"),
}


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("images", ["first", "all"])
def test_each_export_is_a_manifest_unchanged(tmp_path, kind, images):
    name, write, label = WRITERS[kind]
    write(tmp_path / name)
    _, manifest, plan = validate(config(tmp_path, name, store={"images": images}), check_images=False)
    first, every, products, pictures, skipped = EXPECTED[kind.split("-")[0]]
    assert [item.id for item in manifest.items] == (first if images == "first" else every)
    assert manifest.invalid == []
    store = manifest.store
    assert (store.label, store.products, store.pictures, [key for key, _ in store.skipped]) == \
        (label, products, pictures, [skipped])
    assert plan.credits == len(manifest.items)


def test_a_shopify_product_spans_its_rows(tmp_path):
    write_shopify(tmp_path / "products_export.csv", BASE, "older")
    cfg = config(tmp_path, "products_export.csv", store={"images": "all"},
                 prompt="{title} | {description} | {tags} | {image_alt} | {option1_value} | {body_html}")
    _, manifest, _ = validate(cfg, check_images=False)
    mug = {item.id: item for item in manifest.items}
    one, two = mug["ceramic-mug-1"], mug["ceramic-mug-2"]
    assert one.image == f"{BASE}/mug-blue.jpg" and two.image == f"{BASE}/mug-green.jpg"
    # Quoted commas, quotes and newlines survive; the description loses its HTML, keeps its words.
    assert one.prompt.split(" | ")[:5] == ['Ceramic Mug, "Classic"', "Hand-thrown & glazed, in two colours. 350 ml",
                                          "kitchen, ceramic", "Blue mug", "Blue"]
    assert two.prompt.split(" | ")[3] == "Green mug"  # each picture's own alt text
    assert one.prompt.endswith("<ul><li>350&nbsp;ml</li></ul>")  # {body_html}: the column as written
    # Two variants showing one picture are one item.
    assert [i for i in mug if i.startswith("glass-vase")] == ["glass-vase-1"]


def test_a_shopify_pictures_problem_names_the_row_that_names_it(tmp_path):
    """A product's second picture (its own row) and a variant's own picture are reported on the
    records that name them, not on the product's first row."""
    from pipeline.inputs.validate import problem_lines
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"Title": "Mug", "URL handle": "mug", "Product image URL": "a.png", "Image position": "1",
             "SKU": "m-1", "Option1 value": "Blue"},
            {"URL handle": "mug", "SKU": "m-2", "Option1 value": "Green"},
            {"URL handle": "mug", "Product image URL": "gone-2.png", "Image position": "2"},
            {"URL handle": "mug", "SKU": "m-3", "Option1 value": "Red", "Variant image URL": "gone-3.png"}]
    _write_csv(tmp_path / "products_export.csv", SHOPIFY_CURRENT, rows)
    cfg = config(tmp_path, "products_export.csv", store={"images": "all"}, prompt="{title}")
    _, manifest, _ = validate(cfg, env={})
    lines = problem_lines(manifest)
    assert [line.split("products_export.csv ", 1)[1].split(":")[0] for line in lines] == [
        "row 4 (id mug-2)", "row 5 (id mug-3)"], lines


def test_a_store_exports_items_hold_their_cells_as_tuples_over_one_layout(tmp_path):
    """A dict per item of a Shopify export's 20-odd columns took 1.2 GB to validate 600,000 pictures (#21 §1)."""
    from pipeline.inputs.items import Cells
    write_shopify(tmp_path / "products_export.csv", BASE, "current")
    _, manifest, _ = validate(config(tmp_path, "products_export.csv", store={"images": "all"}), check_images=False)
    cells = [item.extra for item in manifest.items]
    assert len(cells) > 2 and all(isinstance(c, Cells) for c in cells)
    assert len({id(c._at) for c in cells}) == 1
    one = {item.id: item for item in manifest.items}["ceramic-mug-1"].extra
    assert (one["title"], one["image_alt"], one["position"]) == ('Ceramic Mug, "Classic"', "Blue mug", "1")


def test_plain_text():
    assert plain_text("<p>Hand-thrown &amp; glazed,\n<b>two</b>&nbsp;colours</p><script>x()</script>") == \
        "Hand-thrown & glazed, two colours"
    assert plain_text("a < b &lt;c&gt; <!-- note -->d") == "a < b <c> d"


def test_a_spreadsheets_semicolons(tmp_path):
    write_shopify(tmp_path / "products_export.csv", BASE)
    rows = read_csv(tmp_path / "products_export.csv")
    _write_csv(tmp_path / "products_export.csv", list(rows[0]), rows, delimiter=";")
    _, manifest, _ = validate(config(tmp_path, "products_export.csv"), check_images=False)
    assert [item.id for item in manifest.items] == EXPECTED["shopify"][0]
    assert manifest.items[0].prompt == 'Ceramic Mug, "Classic" by Acme, Mugs'


def test_store_format_overrides_detection(tmp_path):
    write_merchant_tsv(tmp_path / "feed.tsv", BASE)
    assert main(["validate", str(config(tmp_path, "feed.tsv", store={"format": "shopify"}))]) == 2


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_any_table_with_a_columns_mapping(tmp_path, kind):
    rows = [{"sku": "A-1", "main_image_url": f"{BASE}/a.jpg", "Product Name": "Alpha"},
            {"sku": "B-2", "main_image_url": f"{BASE}/b.jpg", "Product Name": "Beta"}]
    name = f"table.{kind}"
    if kind == "jsonl":
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "parquet":
        import pandas as pd
        pd.DataFrame(rows).to_parquet(tmp_path / name)
    else:
        _write_csv(tmp_path / name, list(rows[0]), rows, delimiter="\t" if kind == "tsv" else ",")
    cfg = config(tmp_path, name, columns={"id": "sku", "image": "main_image_url", "title": "Product Name"},
                 prompt="{title} / {product_name} / {sku}")
    _, manifest, _ = validate(cfg, check_images=False)
    assert [(i.id, i.image, i.prompt) for i in manifest.items] == [
        ("A-1", f"{BASE}/a.jpg", "Alpha / Alpha / A-1"), ("B-2", f"{BASE}/b.jpg", "Beta / Beta / B-2")]


def test_todays_manifest_is_read_as_before(tmp_path):
    (tmp_path / "catalog.csv").write_text("id,image,prompt\nmug,https://x.test/m.jpg,a mug\n")
    _, manifest, _ = validate(config(tmp_path, "catalog.csv", prompt=None), check_images=False)
    assert manifest.store is None and [(i.id, i.prompt) for i in manifest.items] == [("mug", "a mug")]


def _shopify_rows(changes: dict | None = None) -> list[dict]:
    rows = [dict.fromkeys(SHOPIFY_CURRENT, "") for _ in range(3)]
    rows[0].update({"URL handle": "mug", "Title": "Mug", "Product image URL": f"{BASE}/m.jpg", "Image position": "1"})
    rows[1].update({"URL handle": "mug", "Product image URL": f"{BASE}/m2.jpg", "Image position": "2"})
    rows[2].update({"URL handle": "lamp", "Title": "Lamp", "Product image URL": f"{BASE}/l.jpg"})
    for (i, column), value in (changes or {}).items():
        rows[i][column] = value
    return rows


def _bad(tmp_path: Path, kind: str) -> str:
    if kind == "no picture column":
        header = [h for h in SHOPIFY_CURRENT if h not in ("Product image URL", "Variant image URL")]
        _write_csv(tmp_path / "e.csv", header, [{k: v for k, v in r.items() if k in header} for r in _shopify_rows()])
    elif kind == "blank handle":
        _write_csv(tmp_path / "e.csv", SHOPIFY_CURRENT, _shopify_rows({(1, "URL handle"): ""}))
    elif kind == "two products, one id":
        rows = _shopify_rows({(2, "URL handle"): "mug", (1, "URL handle"): "lamp", (1, "Title"): "Lamp"})
        _write_csv(tmp_path / "e.csv", SHOPIFY_CURRENT, rows)
    elif kind == "picture not a URL":
        _write_csv(tmp_path / "e.csv", SHOPIFY_CURRENT, _shopify_rows({(2, "Product image URL"): "javascript:void(0)"}))
    elif kind == "xml does not parse":
        (tmp_path / "e.xml").write_text('<?xml version="1.0"?>\n<rss xmlns:g="http://base.google.com/ns/1.0">\n'
                                        '<channel><item><g:id>A</g:id>\n  <g:title>x</g:titel></item></channel></rss>\n')
        return "e.xml"
    elif kind == "prompt over the limit":
        _write_csv(tmp_path / "e.csv", SHOPIFY_CURRENT, _shopify_rows({(2, "Title"): "Lamp " * 100 + "x" * 101}))
    return "e.csv"


BAD = {
    "no picture column": "error: e.csv: a Shopify export without a picture column ('Product image URL'); "
                         "export the products again with their images",
    "blank handle": "error: e.csv row 3: the handle ('URL handle') is blank: every row of a product repeats its handle",
    "two products, one id": "error: e.csv row 4: duplicate id 'mug': a product with this id begins on row 2 (a "
                            "product's rows must be together, and ids unique)",
    "picture not a URL": "error: e.csv row 4 (id lamp): image must be a local path, an http(s):// URL or a storage "
                         "URL such as s3://bucket/key (got 'javascript:void(0)')",
    "xml does not parse": "error: e.xml: line 4, column 15: the XML feed does not parse (mismatched tag)",
    "prompt over the limit": "error: e.csv row 4 (id lamp): prompt is longer than 500 characters, LightX's limit "
                             "(got 601 characters)",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_is_one_clear_line(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    name = _bad(tmp_path, kind)
    code = main(["validate", str(config(tmp_path, name, prompt="{title}"))])
    errors = [line.split(" ", 1)[1] if line[:4].isdigit() else line
              for line in capsys.readouterr().err.splitlines()]
    assert (code, errors) == (2, [BAD[kind]])


def test_validate_json_names_the_store(tmp_path, capsys):
    write_shopify(tmp_path / "products_export.csv", BASE)
    assert main(["validate", "--json", str(config(tmp_path, "products_export.csv"))]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["store"] == {"format": "shopify", "label": "Shopify product CSV (current headers)", "products": 4,
                            "pictures": 4, "without_picture": ["gift-card"]}
