"""How long `pipeline run --dry-run` of a store export takes when its CDN is down.

    python benchmarks/cdn_down.py                      # 1,000 products, both cases, config defaults
    python benchmarks/cdn_down.py --rows 5000 --budget-s 30 --case silent

A Shopify export (older headers) of N products, one picture each, all on one loopback host that
either refuses every connection (`refused`: a port bound, never listening) or accepts and never
answers (`silent`). The dry run runs in a child process, timed (wall, CPU user + system, peak RSS),
and the items it says it could not plan are counted. With a CDN down the wall time is about one
retry budget (`retries.budget_s`, 300 s by default) plus one try, whatever N is. Not part of the suite.
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def write_export(root: Path, rows: int, base: str, budget_s: float | None) -> Path:
    with open(root / "products_export.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Handle", "Title", "Vendor", "Type", "Tags", "Image Src", "Image Position", "Image Alt Text"])
        for k in range(rows):
            writer.writerow([f"p-{k:06d}", f"Product {k}", "Acme", "Mugs", "", f"{base}/img/p{k:06d}.jpg", "1", ""])
    doc = {"manifest": "products_export.csv", "prompt": "{title} on a marble counter", "output": {"dir": "out"}}
    if budget_s is not None:
        doc["retries"] = {"budget_s": budget_s}
    (root / "catalog.yaml").write_text(json.dumps(doc))  # JSON is YAML
    return root / "catalog.yaml"


def silent_host() -> int:
    """A loopback port that accepts connections and never answers on them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)
    held = []

    def accept() -> None:
        while True:
            held.append(server.accept()[0])
    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def measure(case: str, rows: int, budget_s: float | None) -> None:
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: every connection refused
    port = refusing.getsockname()[1] if case == "refused" else silent_host()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_export(Path(tmp), rows, f"http://127.0.0.1:{port}", budget_s)
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config), "--dry-run", "--json"],
                              capture_output=True, text=True)
        wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    doc = json.loads(done.stdout)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"{case:8} {rows:6,} rows  budget {budget_s or 'default'}: exit {done.returncode}, wall {wall:6.1f} s, "
          f"CPU {cpu:.2f} s, peak RSS {after.ru_maxrss / 1024:.0f} MB, not planned {len(doc['problems']):,}, "
          f"credits needed {doc['credits']['needed']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--budget-s", type=float, default=None, help="retries.budget_s (default: the config's)")
    parser.add_argument("--case", choices=("refused", "silent", "both"), default="both")
    args = parser.parse_args()
    for case in ("refused", "silent") if args.case == "both" else (args.case,):
        measure(case, args.rows, args.budget_s)


if __name__ == "__main__":
    main()
