"""Store exports as the stores write them, for the tests: Shopify (both generations), WooCommerce,
Merchant Center (TSV, RSS, Atom). Pictures are URLs under `base` (a local HTTP server's)."""
from __future__ import annotations

import csv
from pathlib import Path

SHOPIFY_OLDER = ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published", "Option1 Name",
                 "Option1 Value", "Variant SKU", "Variant Price", "Image Src", "Image Position", "Image Alt Text",
                 "Variant Image", "Status"]
SHOPIFY_CURRENT = ["Title", "URL handle", "Description", "Vendor", "Product category", "Type", "Tags",
                   "Published on online store", "Status", "SKU", "Option1 name", "Option1 value", "Price",
                   "Product image URL", "Image position", "Image alt text", "Variant image URL"]
# our column -> each generation's
_GEN = {"handle": ("Handle", "URL handle"), "body": ("Body (HTML)", "Description"),
        "sku": ("Variant SKU", "SKU"), "opt": ("Option1 Value", "Option1 value"),
        "image": ("Image Src", "Product image URL"), "pos": ("Image Position", "Image position"),
        "alt": ("Image Alt Text", "Image alt text"), "vimage": ("Variant Image", "Variant image URL")}


def shopify_products(base: str) -> list[dict]:
    """Four products: a two-picture mug with variants (quoted commas, newlines, HTML), a one-picture
    vase whose variants share its picture, a gift card without a picture, a lamp."""
    return [
        {"handle": "ceramic-mug", "Title": 'Ceramic Mug, "Classic"', "Vendor": "Acme", "Type": "Mugs",
         "Tags": "kitchen, ceramic",
         "body": "<p>Hand-thrown &amp; glazed,\nin <b>two</b> colours.</p>\n<ul><li>350&nbsp;ml</li></ul>",
         "variants": [("Blue", "MUG-B", f"{base}/mug-blue.jpg"), ("Green", "MUG-G", f"{base}/mug-green.jpg")],
         "pictures": [(f"{base}/mug-blue.jpg", "Blue mug"), (f"{base}/mug-green.jpg", "Green mug")]},
        {"handle": "glass-vase", "Title": "Glass Vase", "Vendor": "Acme", "Type": "Vases", "Tags": "glass",
         "body": "Clear glass", "variants": [("Small", "VASE-S", f"{base}/vase.png"),
                                              ("Large", "VASE-L", f"{base}/vase.png")],
         "pictures": [(f"{base}/vase.png", "A vase")]},
        {"handle": "gift-card", "Title": "Gift Card", "Vendor": "Acme", "Type": "Gift card", "Tags": "",
         "body": "", "variants": [("25", "GC-25", ""), ("50", "GC-50", "")], "pictures": []},
        {"handle": "desk-lamp", "Title": "Desk Lamp", "Vendor": "Lumen", "Type": "Lamps", "Tags": "light",
         "body": "<div>Brass</div>", "variants": [("Default Title", "LAMP", "")],
         "pictures": [(f"{base}/lamp.jpg", "")]},
    ]


def write_shopify(path: Path, base: str, generation: str = "current", products: list[dict] | None = None) -> Path:
    """The export as the admin writes it: first row with the product fields, continuation rows with
    variants and pictures (a row may carry both), product fields blank on continuation rows."""
    header = SHOPIFY_CURRENT if generation == "current" else SHOPIFY_OLDER
    g = 1 if generation == "current" else 0
    rows = []
    for product in products or shopify_products(base):
        n = max(len(product["variants"]), len(product["pictures"]))
        for i in range(n):
            row = dict.fromkeys(header, "")
            row[_GEN["handle"][g]] = product["handle"]
            if i == 0:
                row.update({"Title": product["Title"], "Vendor": product["Vendor"], "Type": product["Type"],
                            "Tags": product["Tags"], _GEN["body"][g]: product["body"]})
            if i < len(product["variants"]):
                value, sku, vimage = product["variants"][i]
                row.update({_GEN["opt"][g]: value, _GEN["sku"][g]: sku, _GEN["vimage"][g]: vimage})
            if i < len(product["pictures"]):
                url, alt = product["pictures"][i]
                row.update({_GEN["image"][g]: url, _GEN["pos"][g]: str(i + 1), _GEN["alt"][g]: alt})
            rows.append(row)
    _write_csv(path, header, rows)
    return path


WOO_HEADER = ["ID", "Type", "SKU", "Name", "Published", "Short description", "Description", "Regular price",
              "Categories", "Tags", "Images", "Parent"]


def write_woocommerce(path: Path, base: str) -> Path:
    rows = [
        {"ID": "101", "Type": "simple", "SKU": "MUG", "Name": "Mug, large", "Description": "<p>Stoneware &amp; glaze</p>",
         "Categories": "Kitchen > Mugs", "Tags": "mug", "Images": f"{base}/mug-blue.jpg, {base}/mug-green.jpg"},
        {"ID": "102", "Type": "variable", "SKU": "VASE", "Name": "Vase", "Description": "Glass",
         "Categories": "Home > Vases", "Images": f"{base}/vase.png"},
        {"ID": "103", "Type": "variation", "SKU": "VASE-S", "Name": "Vase - Small", "Parent": "id:102", "Images": ""},
        {"ID": "104", "Type": "variation", "SKU": "VASE-L", "Name": "Vase - Large", "Parent": "VASE",
         "Images": f"{base}/vase.png"},
        {"ID": "105", "Type": "simple", "SKU": "SERVICE", "Name": "Gift wrapping", "Images": ""},
        {"ID": "106", "Type": "simple", "SKU": "LAMP", "Name": "Lamp", "Categories": "Lighting",
         "Images": f"{base}/lamp.jpg"},
    ]
    _write_csv(path, WOO_HEADER, [{**dict.fromkeys(WOO_HEADER, ""), **r} for r in rows])
    return path


MERCHANT_HEADER = ["id", "title", "description", "link", "image_link", "additional_image_link", "brand",
                   "product_type", "item_group_id", "price", "availability", "condition"]


def merchant_items(base: str) -> list[dict]:
    return [
        {"id": "MUG-B", "title": "Mug blue", "description": "<b>Blue</b> mug", "image_link": f"{base}/mug-blue.jpg",
         "additional_image_link": f"{base}/mug-green.jpg", "brand": "Acme", "product_type": "Kitchen > Mugs",
         "item_group_id": "MUG", "price": "12.00 EUR"},
        {"id": "MUG-G", "title": "Mug green", "description": "Green mug", "image_link": f"{base}/mug-blue.jpg",
         "brand": "Acme", "product_type": "Kitchen > Mugs", "item_group_id": "MUG", "price": "12.00 EUR"},
        {"id": "CARD", "title": "Gift card", "description": "", "image_link": "", "brand": "Acme"},
        {"id": "LAMP", "title": "Lamp", "description": "Brass lamp", "image_link": f"{base}/lamp.jpg",
         "brand": "Lumen", "product_type": "Lighting", "price": "40.00 EUR"},
    ]


def write_merchant_tsv(path: Path, base: str) -> Path:
    rows = [{**dict.fromkeys(MERCHANT_HEADER, ""), **r} for r in merchant_items(base)]
    _write_csv(path, MERCHANT_HEADER, rows, delimiter="\t")
    return path


def write_merchant_xml(path: Path, base: str, kind: str = "rss") -> Path:
    from xml.sax.saxutils import escape
    entries = []
    for item in merchant_items(base):
        parts = [f"<g:{k}>{escape(v)}</g:{k}>" for k, v in item.items() if v and k != "additional_image_link"]
        parts += [f"<g:additional_image_link>{escape(u)}</g:additional_image_link>"
                  for u in item.get("additional_image_link", "").split(",") if u]
        tag = "item" if kind == "rss" else "entry"
        entries.append(f"<{tag}>" + "".join(parts) + f"</{tag}>")
    if kind == "rss":
        text = ('<?xml version="1.0"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
                "<title>Shop</title>\n" + "\n".join(entries) + "\n</channel></rss>\n")
    else:
        text = ('<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
                'xmlns:g="http://base.google.com/ns/1.0"><title>Shop</title>\n' + "\n".join(entries) + "\n</feed>\n")
    path.write_text(text, encoding="utf-8")
    return path


def _write_csv(path: Path, header: list[str], rows: list[dict], delimiter: str = ",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


class PictureServer:
    """A static HTTP server on 127.0.0.1 for a folder of pictures (a store's CDN); 404 for what is absent."""

    def __init__(self, root: Path):
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "PictureServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def draw_pictures(root: Path) -> Path:
    """The pictures the fixtures name, under root/img."""
    from conftest import draw_product
    (root / "img").mkdir(parents=True, exist_ok=True)
    for name, colour, shape in (("mug-blue.jpg", "blue", 0), ("mug-green.jpg", "green", 1),
                                ("vase.png", "teal", 1), ("lamp.jpg", "gold", 0)):
        draw_product(root / "img" / name, colour, shape=shape)
    return root / "img"
