"""Catalog refresh: pay only for what changed; odd images, remote images, budget and dry run."""
from __future__ import annotations

import csv
import http.server
import os
from pathlib import Path

import pytest
from PIL import Image

from helpers import draw_product, results, static_server, write_catalog
from pipeline.cli import main


def read_rows(config: Path) -> list[dict]:
    with open(config.parent / "catalog.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rewrite(config: Path, rows: list[dict]) -> None:
    with open(config.parent / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_refresh_sends_exactly_the_changed_items(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 20, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    rows = read_rows(config)
    for row in rows[:3]:                       # 3 prompt edits
        row["scene"] = "a rustic wooden table"
    for row in rows[3:5]:                      # 2 images replaced at the same path
        draw_product(catalog_dir / row["image"], "black", shape=1)
    removed = rows.pop(10)                     # 1 row removed
    rows.append({"id": "sku-new", "image": "images/new.jpg", "title": "new thing", "scene": "sand"})
    draw_product(catalog_dir / "images" / "new.jpg", "yellow")  # 1 row added
    rewrite(config, rows)
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["submit"] == 6
    assert ledger["credits"] == 6
    table = results(config)
    assert len(table) == 20 and removed["id"] not in table and "sku-new" in table
    assert (catalog_dir / "out" / f"{removed['id']}.jpg").exists()  # files of removed rows stay


def test_force_and_only(sandbox, catalog_dir):
    config = write_catalog(catalog_dir, 4, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet", "--only", "sku-001", "sku-002"]) == 1  # others pending
    assert sandbox.ledger_snapshot()["credits"] == 2
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 4
    assert main(["run", str(config), "--quiet", "--force", "--only", "sku-003"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 5
    assert main(["run", str(config), "--quiet", "--force"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 9


def test_only_with_unknown_id_is_a_usage_error(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    assert main(["run", str(config), "--only", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


def test_dry_run_makes_zero_requests_and_counts_the_plan(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 5, base_url=sandbox.base_url)
    assert main(["run", str(config), "--dry-run"]) == 0
    assert "new 5" in capsys.readouterr().out
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0
    assert main(["run", str(config), "--quiet"]) == 0
    rows = read_rows(config)
    rows[0]["scene"] = "grass"
    rewrite(config, rows)
    sandbox.reset_ledger()
    assert main(["run", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "changed 1" in out and "unchanged 4" in out and "credits needed 1" in out
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


def test_budget_cap_stops_submits_mid_run(sandbox, catalog_dir, capsys):
    config = write_catalog(catalog_dir, 10, base_url=sandbox.base_url,
                           config={"budget": {"max_credits": 4}, "limits": {"concurrency": 3}})
    assert main(["run", str(config), "--quiet"]) == 1
    assert sandbox.ledger_snapshot()["credits"] == 4
    statuses = [r["status"] for r in results(config).values()]
    assert statuses.count("done") == 4 and statuses.count("pending") == 6
    assert "budget of 4 credits reached" in capsys.readouterr().err


def test_declined_confirmation_spends_nothing(sandbox, catalog_dir):
    from pipeline.inputs.config import api_key
    from pipeline.run.engine import RunOptions, run
    from pipeline.errors import PipelineError
    from pipeline.inputs.validate import validate
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url, config={"budget": {"confirm_over": 2}})
    cfg, manifest, _ = validate(config)
    asked = []
    with pytest.raises(PipelineError, match="not confirmed"):
        run(cfg, manifest, RunOptions(quiet=True, confirm=lambda n: asked.append(n) or False),
            key=api_key(cfg))
    assert asked == [3]
    assert sum(sandbox.ledger_snapshot()["requests"].values()) == 0


# -- odd images -------------------------------------------------------------------------------

def _odd_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.new("RGB", (120, 90), "white")
    base.paste(Image.new("RGB", (60, 40), "crimson"), (30, 25))
    out = {}
    base.save(out.setdefault("webp", folder / "a.webp"), "WEBP")
    base.save(out.setdefault("bmp", folder / "b.bmp"), "BMP")
    base.convert("CMYK").save(out.setdefault("cmyk", folder / "c.jpg"), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(out.setdefault("rotated", folder / "d.jpg"), "JPEG", exif=exif)
    rgba = base.convert("RGBA")
    rgba.putpixel((0, 0), (255, 255, 255, 0))
    rgba.save(out.setdefault("rgba", folder / "e.png"))
    noise = Image.frombytes("RGB", (1600, 1500), os.urandom(1600 * 1500 * 3))
    noise.save(out.setdefault("big", folder / "f.png"))
    assert out["big"].stat().st_size > 7_000_000
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def image_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    with static_server(root, _Handler) as url:
        yield root, url


def test_odd_formats_and_a_remote_image_all_run_to_done(sandbox, catalog_dir, image_server):
    served, url = image_server
    images = _odd_images(catalog_dir / "images")
    draw_product(served / "remote.jpg", "teal")
    rows = [{"id": name, "image": f"images/{p.name}", "title": name, "scene": "marble"}
            for name, p in images.items()]
    rows.append({"id": "remote", "image": f"{url}/remote.jpg", "title": "remote", "scene": "marble"})
    config = write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows)
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["rejected_uploads"] == []
    assert ledger["credits"] == len(rows)
    with Image.open(catalog_dir / "out" / "rotated.jpg") as im:
        assert im.size == (90, 120)  # EXIF orientation applied before upload
    assert images["big"].stat().st_size > 7_000_000  # originals untouched


def test_bad_remote_images_fail_their_items_only(sandbox, catalog_dir, image_server):
    served, url = image_server
    (served / "page.jpg").write_text("<html>not an image</html>")
    draw_product(served / "ok.jpg", "navy")
    rows = [{"id": "ok", "image": f"{url}/ok.jpg", "title": "ok", "scene": "sand"},
            {"id": "html", "image": f"{url}/page.jpg", "title": "x", "scene": "sand"},
            {"id": "redirect", "image": f"{url}/to-file", "title": "x", "scene": "sand"},
            {"id": "missing", "image": f"{url}/nope.jpg", "title": "x", "scene": "sand"},
            {"id": "huge", "image": f"{url}/huge.png", "title": "x", "scene": "sand"}]
    Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(served / "huge.png")
    config = write_catalog(catalog_dir, base_url=sandbox.base_url, rows=rows,
                           config={"images": {"remote_max_bytes": 100_000}})
    assert main(["run", str(config), "--quiet"]) == 1
    table = results(config)
    assert table["ok"]["status"] == "done"
    assert {table[i]["status"] for i in ("html", "redirect", "missing", "huge")} == {"failed"}
    assert "larger than" in table["huge"]["error"]
    assert "not an image" in table["html"]["error"]
    assert "file" in table["redirect"]["error"]
    assert "404" in table["missing"]["error"]
    assert sandbox.ledger_snapshot()["credits"] == 1


def test_another_spelling_of_the_api_url_buys_nothing_again(sandbox, catalog_dir, monkeypatch):
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    monkeypatch.setenv("LIGHTX_BASE_URL", sandbox.base_url.replace("127.0.0.1", "localhost") + "/")
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 0
    assert sandbox.ledger_snapshot()["requests"].get("submit", 0) == 0


def test_a_checkpoint_whose_fingerprints_name_the_url_is_adopted_not_bought_again(sandbox, catalog_dir):
    import sqlite3

    from pipeline.plan.planner import fingerprint
    config = write_catalog(catalog_dir, 4, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    db = catalog_dir / "out" / ".pipeline" / "checkpoint.sqlite"
    written = dict(sqlite3.connect(db).execute("SELECT id, fingerprint FROM items"))
    prompts = {r["id"]: f"{r['title']} on {r['scene']}" for r in read_rows(config)}
    with sqlite3.connect(db) as conn:  # as schema 1 wrote them: the base URL was the API's kind
        for item_id, sha in conn.execute("SELECT id, image_sha256 FROM items").fetchall():
            conn.execute("UPDATE items SET fingerprint = ? WHERE id = ?",
                         (fingerprint(sha, prompts[item_id], sandbox.base_url), item_id))
    sandbox.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["credits"] == 0
    adopted = dict(sqlite3.connect(db).execute("SELECT id, fingerprint FROM items"))
    assert adopted == written and len(set(written.values())) == 4  # today's fingerprints, written back
