"""How long `pipeline validate` takes on a big Shopify export: N products, 3 rows each.

    python benchmarks/store_validate.py                    # 10,000 products, 30,000 rows
    python benchmarks/store_validate.py --products 50000 --generation older

The export is written as Shopify's admin writes it (current header generation by default): each
product's first row with Title, an HTML description, Vendor, Type and Tags; two continuation rows
with a further variant and picture. Pictures are URLs (not fetched at validate). `pipeline validate`
then runs in a child process, timed (wall, and CPU: user + system, steadier on a busy machine); its
peak memory is the child's max RSS. Not part of the suite.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from store_exports import SHOPIFY_CURRENT, SHOPIFY_OLDER, _GEN  # noqa: E402  the tests' own Shopify layout


def write_export(path: Path, products: int, generation: str) -> int:
    header = SHOPIFY_CURRENT if generation == "current" else SHOPIFY_OLDER
    g = 1 if generation == "current" else 0
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for k in range(products):
            handle = f"product-{k:06d}"
            for i in range(3):
                row = dict.fromkeys(header, "")
                row[_GEN["handle"][g]] = handle
                if i == 0:
                    row.update({"Title": f"Ceramic mug no. {k}, \"stoneware\"", "Vendor": "Acme",
                                "Type": "Mugs", "Tags": "kitchen, ceramic",
                                _GEN["body"][g]: f"<p>Hand-thrown &amp; glazed mug {k}.</p>\n<ul><li>350&nbsp;ml"
                                                 f"</li><li>dishwasher safe</li></ul>"})
                row.update({_GEN["opt"][g]: ["Blue", "Green", "Red"][i], _GEN["sku"][g]: f"MUG-{k}-{i}",
                            _GEN["image"][g]: f"https://cdn.shopify.com/s/files/1/0001/products/{handle}-{i}.jpg",
                            _GEN["pos"][g]: str(i + 1), _GEN["alt"][g]: f"Mug {k} view {i + 1}"})
                writer.writerow(row)
                rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--generation", choices=("current", "older"), default="current")
    parser.add_argument("--images", choices=("first", "all"), default="first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = write_export(root / "products_export.csv", args.products, args.generation)
        (root / "catalog.yaml").write_text(
            "manifest: products_export.csv\nprompt: \"{title}, {product_type} by {brand}, on marble\"\n"
            f"store: {{images: {args.images}}}\noutput: {{dir: out}}\n")
        size = (root / "products_export.csv").stat().st_size
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(root / "catalog.yaml")],
                              capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        print(done.stdout.strip() or done.stderr.strip()[-400:])
        print(f"{args.products} products, {rows} rows ({size / 1e6:.1f} MB, {args.generation} headers, "
              f"images: {args.images}): validate {elapsed:.2f} s wall, {cpu:.2f} s CPU, peak {peak_mb:.0f} MB, "
              f"exit {done.returncode}")


if __name__ == "__main__":
    main()
