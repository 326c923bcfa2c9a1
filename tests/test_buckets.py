"""Catalogs in buckets, against moto's S3 server on 127.0.0.1: manifest, images and outputs in s3://."""
from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from helpers import draw_product, problems_of, write_catalog
from pipeline.cli import main
from pipeline.inputs.validate import validate


def bucket_catalog(s3, root: Path, n: int = 6, *, base_url: str = "http://127.0.0.1:1", bucket: str = "cat",
                   config: dict | None = None) -> Path:
    """A catalog whose manifest and images live in s3://bucket/, and a local config naming it; the
    outputs go to s3://bucket/out and the state to root/state."""
    settings: dict = {"output": {"dir": f"s3://{bucket}/out"}, "state": {"dir": "state"}}
    for section, values in (config or {}).items():
        settings[section] = {**settings.get(section, {}), **values} if isinstance(values, dict) else values
    local = write_catalog(root / "files", n, base_url=base_url, config=settings)
    doc = yaml.safe_load(local.read_text())
    local.unlink()
    s3.put_tree(bucket, root / "files")
    doc["manifest"] = (config or {}).get("manifest", f"s3://{bucket}/catalog.csv")
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# -- reading a catalog from a bucket --------------------------------------------------------------

def test_manifest_and_images_in_a_bucket_validate_with_relative_paths_resolved_inside_it(s3, tmp_path):
    config = bucket_catalog(s3, tmp_path, 4)
    cfg, manifest, plan = validate(config)
    assert cfg.manifest_path == "s3://cat/catalog.csv" and cfg.output_url == "s3://cat/out"
    assert [i.image_url for i in manifest.items] == [f"s3://cat/images/p{k}.{'png' if k % 2 else 'jpg'}"
                                                     for k in range(4)]
    assert all(i.image_path is None for i in manifest.items)
    assert (plan.items, plan.invalid, plan.credits) == (4, 0, 4)


def test_a_missing_object_and_a_broken_image_make_their_rows_invalid(s3, tmp_path):
    config = bucket_catalog(s3, tmp_path, 4)
    s3.client.delete_object(Bucket="cat", Key="images/p1.png")
    good = (tmp_path / "files" / "images" / "p2.jpg").read_bytes()
    s3.client.put_object(Bucket="cat", Key="images/p2.jpg", Body=good[: len(good) // 2])  # cut short
    s3.client.put_object(Bucket="cat", Key="images/p3.png", Body=b"not an image at all" * 100)
    lines = problems_of(config)
    assert any("row 3 (id sku-001): image 'images/p1.png' not found (s3://cat/images/p1.png)" in l for l in lines), lines
    assert any("row 4 (id sku-002): image 'images/p2.jpg' is truncated" in l for l in lines), lines
    assert any("row 5 (id sku-003): image 'images/p3.png' is not an image" in l for l in lines), lines
    assert len(lines) == 3


def test_a_png_cut_short_in_a_bucket_is_reported_as_truncated(s3, tmp_path):
    """A PNG's header opens whole when the file is cut after it: its IEND chunk says whether it is."""
    config = bucket_catalog(s3, tmp_path, 4)
    good = (tmp_path / "files" / "images" / "p1.png").read_bytes()
    s3.client.put_object(Bucket="cat", Key="images/p1.png", Body=good[: len(good) // 2])  # pixels cut
    s3.client.put_object(Bucket="cat", Key="images/p3.png", Body=good[:30])  # cut inside its header
    lines = problems_of(config)
    assert any("row 3 (id sku-001): image 'images/p1.png' is truncated: no PNG end chunk (IEND)" in l
               for l in lines), lines
    assert any("row 5 (id sku-003): image 'images/p3.png' is truncated: no PNG end chunk (IEND)" in l
               for l in lines), lines
    assert len(lines) == 2


def test_a_bucket_that_does_not_exist_is_a_clear_error(s3, tmp_path):
    config = bucket_catalog(s3, tmp_path, 2)
    config.write_text(config.read_text().replace("s3://cat/catalog.csv", "s3://no-such-bucket/catalog.csv"))
    [line] = problems_of(config)
    assert "s3://no-such-bucket/catalog.csv: the bucket does not exist" in line


def test_a_missing_manifest_object_is_a_clear_error(s3, tmp_path):
    config = bucket_catalog(s3, tmp_path, 2)
    config.write_text(config.read_text().replace("s3://cat/catalog.csv", "s3://cat/nope.csv"))
    [line] = problems_of(config)
    assert line == "s3://cat/nope.csv: manifest not found"


def test_no_credentials_is_a_clear_error_and_names_what_to_set(s3, tmp_path, monkeypatch):
    config = bucket_catalog(s3, tmp_path, 2)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    from pipeline.store import remote
    remote.forget_filesystems()
    [line] = problems_of(config)
    assert "s3://cat/catalog.csv: no credentials for s3://" in line and "AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("field, value, expected", [
    ("manifest", "foo://cat/catalog.csv", "manifest: unknown URL scheme 'foo://'"),
    ("manifest", "gs://cat/catalog.csv",
     "manifest: gs:// needs the gcsfs backend: pip install 'lightx-pipeline[gcs]'"),
    ("output", {"dir": "az://cat/out"}, "output.dir: az:// needs the adlfs backend: pip install 'lightx-pipeline[azure]'"),
    ("state", {"dir": "s3://cat/state"}, "state.dir: 's3://cat/state' must be a local directory"),
    ("storage", {"options": {"secret": "x"}}, "storage.options.secret: credentials must not be in the config"),
    ("storage", {"options": {"client_kwargs": {"aws_secret_access_key": "x"}}},
     "storage.options.client_kwargs.aws_secret_access_key: credentials must not be in the config"),
])
def test_bad_storage_settings_are_named_before_anything_is_read(s3, tmp_path, field, value, expected):
    config = bucket_catalog(s3, tmp_path, 2, config={field: value})
    lines = problems_of(config)
    assert any(expected in line for line in lines), lines
    assert "'x'" not in " ".join(lines)  # a would-be secret is never echoed


def test_output_dir_in_a_bucket_needs_a_local_state_dir(s3, tmp_path):
    config = bucket_catalog(s3, tmp_path, 2)
    doc = yaml.safe_load(config.read_text())
    del doc["state"]
    config.write_text(yaml.safe_dump(doc))
    [line] = problems_of(config)
    assert "output.dir is a storage URL (s3://cat/out), so state.dir is required" in line
    assert "state: {dir: .pipeline-state}" in line and "SQLite" in line


def test_backend_not_installed_for_an_image_exits_2(s3, tmp_path, capsys):
    config = bucket_catalog(s3, tmp_path, 2)
    s3.client.put_object(Bucket="cat", Key="catalog.csv",
                         Body=b"id,image,title,scene\na,gs://other/a.jpg,t,s\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "image 'gs://other/a.jpg': gs:// needs the gcsfs backend: pip install 'lightx-pipeline[gcs]'" in err


# -- running a catalog kept wholly in a bucket ------------------------------------------------------

def read_table(s3, key: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(s3.get("cat", key)["Body"].read().decode("utf-8"))))


def test_a_catalog_wholly_in_a_bucket_runs_then_reruns_free_even_without_its_state(s3, sandbox, tmp_path):
    n = 6
    config = bucket_catalog(s3, tmp_path, n, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    ids = [f"sku-{i:03d}" for i in range(n)]
    keys = s3.keys("cat", "out/")
    assert [f"out/{i}.jpg" for i in ids] == [k for k in keys if k.startswith("out/sku-")]
    for item_id in ids:
        obj = s3.get("cat", f"out/{item_id}.jpg")
        assert obj["ContentType"] == "image/jpeg"
        assert obj["Metadata"]["pipeline-fingerprint"]
        with Image.open(io.BytesIO(obj["Body"].read())) as im:
            assert im.format == "JPEG" and im.size == (96, 96)
            im.load()
    table = read_table(s3, "out/results.csv")
    assert [r["id"] for r in table] == ids and {r["status"] for r in table} == {"done"}
    assert {"out/results.parquet", "out/report.html"} <= set(keys)
    assert s3.get("cat", "out/report.html")["ContentType"].startswith("text/html")
    assert not (tmp_path / "out").exists()  # nothing of the outputs on local disk but the state
    assert sandbox.ledger_snapshot()["credits"] == n

    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["requests"]["submit"] == n  # a rerun: nothing bought

    shutil.rmtree(tmp_path / "state")  # the pod lost its disk
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["submit"] == n and ledger["credits"] == n
    table = read_table(s3, "out/results.csv")
    assert {r["status"] for r in table} == {"done"}
    # The adopted rows keep what the table in the bucket said of their orders.
    assert sum(int(r["credits"]) for r in table) == n and all(r["order_id"] for r in table)


def test_the_report_in_the_bucket_links_only_relatively_to_objects_that_exist(s3, sandbox, tmp_path):
    import re
    config = bucket_catalog(s3, tmp_path, 3, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    html = s3.get("cat", "out/report.html")["Body"].read().decode("utf-8")
    links = set(re.findall(r'(?:href|src)="([^"#]+)"', html)) - {""}
    assert links, html[:500]
    keys = set(s3.keys("cat", "out/"))
    for link in links:
        assert "://" not in link and not link.startswith("/"), link
        assert f"out/{link}" in keys, link
    assert any(link.startswith("thumbs/") and link.endswith("-out.jpg") for link in links)  # made at download
    assert any(link.startswith("thumbs/") and "-in." in link for link in links)


def test_a_changed_output_in_the_bucket_is_repaired_and_an_edited_image_reordered(s3, sandbox, tmp_path):
    config = bucket_catalog(s3, tmp_path, 3, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    s3.client.delete_object(Bucket="cat", Key="out/sku-000.jpg")       # an output lost from the bucket
    draw_product(tmp_path / "new.jpg", "black")
    s3.client.put_object(Bucket="cat", Key="images/p1.png", Body=(tmp_path / "new.jpg").read_bytes())
    assert main(["run", str(config), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["requests"]["submit"] == 4  # sku-001's image changed; sku-000 came back without an order
    assert "out/sku-000.jpg" in s3.keys("cat", "out/")


def test_an_output_bucket_that_does_not_exist_stops_the_run_before_anything_is_spent(s3, sandbox, tmp_path, capsys):
    config = bucket_catalog(s3, tmp_path, 2, base_url=sandbox.base_url,
                            config={"output": {"dir": "s3://no-such-bucket/out"}})
    assert main(["run", str(config), "--quiet"]) == 2
    assert "s3://no-such-bucket/out: the bucket does not exist" in capsys.readouterr().err
    assert sandbox.ledger_snapshot()["requests"].get("upload_url", 0) == 0
    assert sandbox.ledger_snapshot()["credits"] == 0


def test_four_shards_at_once_into_one_bucket_then_report_merges_them(s3, sandbox, tmp_path):
    import subprocess
    from helpers import child_env, pipeline_cmd
    n = 16
    config = bucket_catalog(s3, tmp_path, n, base_url=sandbox.base_url)
    children = [subprocess.Popen(pipeline_cmd("run", str(config), "--quiet", "--shard", f"{k}/4"),
                                 env=child_env(**s3.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for k in range(4)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == n and ledger["requests"]["submit"] == n and ledger["max_submits_per_key"] == 1
    parts = [k for k in s3.keys("cat", "out/") if k.startswith("out/results.shard-")]
    assert len(parts) == 8  # csv and parquet of each shard
    # The merge runs where no shard's state is: an Indexed Job's pods keep theirs on volumes of their own.
    shutil.move(tmp_path / "state", tmp_path / "elsewhere")
    from pipeline.outputs.status import read_status
    status = read_status(str(config))  # `pipeline status` reads the same parts
    assert status["exists"] and status["counts"]["items"] == n and status["counts"]["done"] == n
    assert status["credits"]["spent"] == n and "s3://cat/out" in status["checkpoint"]
    assert main(["report", str(config)]) == 0
    table = read_table(s3, "out/results.csv")
    assert sorted(r["id"] for r in table) == [f"sku-{i:03d}" for i in range(n)]
    assert {r["status"] for r in table} == {"done"} and sum(int(r["credits"]) for r in table) == n
    html = s3.get("cat", "out/report.html")["Body"].read().decode("utf-8")
    # Every preview was made by a shard, uploaded, and found in the bucket: this machine has none of
    # the outputs, and no copy of the sources.
    assert len(set(re.findall(r'src="(thumbs/[0-9a-f]{24}-out\.jpg)"', html))) == n
    distinct = {hashlib.sha256(p.read_bytes()).digest() for p in (tmp_path / "files" / "images").iterdir()}
    assert len(set(re.findall(r'src="(thumbs/[0-9a-f]{24}-in\.(?:jpg|png))"', html))) == len(distinct)
    assert "not fetched yet" not in html


def test_a_style_image_beside_a_manifest_in_a_bucket_is_read_from_it_once(s3, sandbox, tmp_path):
    shoot = {"name": "shoot", "steps": [{"tool": "product-photoshoot", "style_image": "style.png"}]}
    config = bucket_catalog(s3, tmp_path, 3, base_url=sandbox.base_url,
                            config={"variants": [shoot], "output": {"filename": "{variant}/{id}.jpg"}})
    draw_product(tmp_path / "style.png", "gold", size=64)
    s3.client.put_object(Bucket="cat", Key="style.png", Body=(tmp_path / "style.png").read_bytes())
    assert main(["run", str(config), "--quiet"]) == 0
    assert [k for k in s3.keys("cat", "out/shoot/")] == [f"out/shoot/sku-{i:03d}.jpg" for i in range(3)]
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 3 and ledger["requests"]["put"] == 4  # three products and one style image
    assert main(["run", str(config), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["requests"]["submit"] == 3
    table = read_table(s3, "out/results.csv")
    assert [(r["id"], r["variant"], r["status"]) for r in table] == [(f"sku-{i:03d}", "shoot", "done") for i in range(3)]


def test_validation_reads_only_images_that_changed_since_a_run_read_them(s3, sandbox, tmp_path, monkeypatch):
    from pipeline.inputs import stored
    config = bucket_catalog(s3, tmp_path, 4, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    read = []
    real, whole = stored._ranges, stored.Remote.read_many
    monkeypatch.setattr(stored, "_ranges", lambda store, wanted: (read.extend(w[0] for w in wanted),
                                                                   real(store, wanted))[1])
    monkeypatch.setattr(stored.Remote, "read_many", lambda store, names: (read.extend(names),
                                                                          whole(store, names))[1])
    _, manifest, _ = validate(config)
    assert len(manifest.items) == 4 and read == []  # the listing alone
    s3.client.put_object(Bucket="cat", Key="images/p2.jpg", Body=b"edited, and no longer an image")
    lines = problems_of(config)  # validates twice: from the whole manifest, and counted (each reads it once)
    assert read == ["p2.jpg"] * 2 and len(lines) == 1 and "image 'images/p2.jpg' is not an image" in lines[0]
