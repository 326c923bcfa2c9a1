"""The AI-disclosure XMP in delivered pictures, read back with exiftool: merged into the service's own
metadata, image data byte for byte as the sandbox sent it, kept right on reruns for 0 credits."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import jpeg_segments, write_catalog
from pipeline.cli import main
from pipeline.media import xmp
from pipeline.sandbox import metadata as own
from pipeline.store.checkpoint import Checkpoint

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


@pytest.fixture
def own_metadata(sandbox):
    """The sandbox's outputs carry EXIF, an XMP packet, a COM segment and an APP11 C2PA box of their own."""
    sandbox.set_options(own_metadata=True, own_c2pa=True)
    return sandbox


def rows_of(config: Path) -> dict:
    return Checkpoint.read_rows(config.parent / "out" / ".pipeline" / "checkpoint.sqlite")


def sent(row) -> bytes:
    """The output exactly as the sandbox serves it."""
    with urllib.request.urlopen(row.output_url) as answer:
        return answer.read()


def snapshot(out: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.glob("*.jpg"))}


def edit(config: Path, change) -> None:
    doc = yaml.safe_load(config.read_text())
    change(doc)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def credits(sandbox) -> int:
    return sandbox.ledger_snapshot()["credits"]


def test_every_output_carries_the_disclosure_beside_the_services_own_metadata(own_metadata, catalog_dir, exiftool):
    n = 4
    config = write_catalog(catalog_dir, n, base_url=own_metadata.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    rows = rows_of(config)
    tags = {Path(t["SourceFile"]).name: t for t in exiftool(*sorted(out.glob("*.jpg")))}
    assert len(tags) == n
    for item_id, row in rows.items():
        t, data = tags[row.output_path], (out / row.output_path).read_bytes()
        assert t["XMP-iptcExt:DigitalSourceType"] == TRAINED
        assert t["XMP-iptcExt:AISystemUsed"] == "LightX AI Background Generator"
        assert t["XMP-iptcExt:AISystemVersionUsed"] == "v1"
        assert "XMP-iptcExt:AIPromptInformation" not in t  # prompts stay private by default
        # the service's own EXIF, XMP properties and comment survive
        assert t["IFD0:Make"] == own.EXIF_MAKE and t["IFD0:Software"] == own.EXIF_SOFTWARE
        assert t["XMP-xmp:CreatorTool"] == own.CREATOR_TOOL and t["XMP-dc:Title"] == own.TITLE
        assert t["File:Comment"] == own.COMMENT.decode()
        original = sent(row)
        mine, theirs = jpeg_segments(data), jpeg_segments(original)
        assert mine[-1] == theirs[-1]  # SOS to EOI, byte for byte
        # every segment the service sent is there, in order; only its XMP packet gained our element
        assert [m for m, _ in mine] == [m for m, _ in theirs]
        assert [p for p in mine if not p[1].startswith(XMP_HEADER)] == \
            [p for p in theirs if not p[1].startswith(XMP_HEADER)]
        assert any(m == 0xEB and p.startswith(b"JP") for m, p in mine)  # the C2PA box
        assert sum(p.startswith(XMP_HEADER) for _, p in mine) == 1  # never a second packet
        assert row.output_sha256 == hashlib.sha256(data).hexdigest()  # the file as written


def test_a_rerun_touches_nothing_and_a_changed_source_type_rewrites_every_file_for_0_credits(
        own_metadata, catalog_dir, exiftool):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=own_metadata.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    before = snapshot(out)
    own_metadata.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert credits(own_metadata) == 0 and snapshot(out) == before

    edit(config, lambda doc: doc["output"].update(disclosure={"source_type": "compositeWithTrainedAlgorithmicMedia"}))
    assert main(["run", str(config), "--quiet"]) == 0
    assert credits(own_metadata) == 0 and own_metadata.ledger_snapshot()["orders"] == {}
    after = snapshot(out)
    assert all(after[name][1] != before[name][1] for name in before)
    for t in exiftool(*sorted(out.glob("*.jpg"))):
        assert t["XMP-iptcExt:DigitalSourceType"] == COMPOSITE and t["XMP-xmp:CreatorTool"] == own.CREATOR_TOOL
    for row in rows_of(config).values():
        data = (out / row.output_path).read_bytes()
        assert row.output_sha256 == hashlib.sha256(data).hexdigest()
        assert jpeg_segments(data)[-1] == jpeg_segments(sent(row))[-1]
    assert main(["run", str(config), "--quiet"]) == 0
    assert snapshot(out) == after


def test_prompt_on_then_off_adds_and_removes_only_our_properties(sandbox, catalog_dir, exiftool, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url,
                           config={"output": {"disclosure": {"prompt": True}}})
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    first = {Path(t["SourceFile"]).name: t for t in exiftool(*sorted(out.glob("*.jpg")))}
    assert first["sku-000.jpg"]["XMP-iptcExt:AIPromptInformation"] == "red product 0 on a white marble counter"
    edit(config, lambda doc: doc["output"].update(disclosure={"source_type": "off"}))
    capsys.readouterr()
    assert main(["validate", str(config)]) == 0
    assert "warning: output.disclosure.source_type is off" in capsys.readouterr().err
    assert main(["run", str(config), "--quiet"]) == 0
    for row in rows_of(config).values():  # back to the bytes the sandbox sent: it had no packet
        assert (out / row.output_path).read_bytes() == sent(row)
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disclosure"] == {"outputs": 2, "lacking": 2, "source_type": "off"}


@pytest.mark.parametrize("value", ["trained", "", "OFF"])
def test_an_unknown_source_type_is_a_config_error(sandbox, catalog_dir, capsys, value):
    config = write_catalog(catalog_dir, 1, base_url=sandbox.base_url,
                           config={"output": {"disclosure": {"source_type": value}}})
    assert main(["validate", str(config)]) == 2
    assert ("output.disclosure.source_type must be trainedAlgorithmicMedia, compositeWithTrainedAlgorithmicMedia "
            "or off") in capsys.readouterr().err


def test_outputs_lacking_the_disclosure_are_counted_then_repaired_for_0_credits(own_metadata, catalog_dir,
                                                                                capsys, exiftool):
    n = 3
    config = write_catalog(catalog_dir, n, base_url=own_metadata.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    out, state = catalog_dir / "out", catalog_dir / "out" / ".pipeline"
    rows = rows_of(config)
    # sku-000: made by an earlier version (the checkpoint knows the file as it is, no record of it);
    # sku-001: its XMP stripped by hand
    earlier = rows["sku-000"]
    raw = sent(earlier)
    (out / earlier.output_path).write_bytes(raw)
    st = (out / earlier.output_path).stat()
    with sqlite3.connect(state / "checkpoint.sqlite") as conn:
        conn.execute("UPDATE items SET output_sha256 = ?, output_size = ?, output_mtime_ns = ? WHERE id = ?",
                     (hashlib.sha256(raw).hexdigest(), st.st_size, st.st_mtime_ns, "sku-000"))
    with sqlite3.connect(state / "delivered.sqlite") as conn:
        conn.execute("DELETE FROM disclosed WHERE name = 'sku-000.jpg'")
    stripped = out / rows["sku-001"].output_path
    stripped.write_bytes(xmp.disclose(stripped.read_bytes(), None))
    assert "XMP-iptcExt:DigitalSourceType" not in exiftool(stripped)[0]
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disclosure"]["lacking"] == 2
    own_metadata.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert credits(own_metadata) == 0 and own_metadata.ledger_snapshot()["orders"] == {}
    for t in exiftool(*sorted(out.glob("*.jpg"))):
        assert t["XMP-iptcExt:DigitalSourceType"] == TRAINED and t["XMP-xmp:CreatorTool"] == own.CREATOR_TOOL
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disclosure"] == {"outputs": n, "lacking": 0,
                                                                 "source_type": "trainedAlgorithmicMedia"}
    for row in rows_of(config).values():
        assert row.output_sha256 == hashlib.sha256((out / row.output_path).read_bytes()).hexdigest()


def test_a_chains_steps_stay_as_received_and_its_picture_names_every_tool(own_metadata, catalog_dir, exiftool):
    chain = {"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title}"},
                                            {"tool": "upscale", "quality": 2}]}
    config = write_catalog(catalog_dir, 2, base_url=own_metadata.base_url,
                           config={"variants": [chain], "output": {"filename": "{variant}/{id}.jpg"}})
    assert main(["run", str(config), "--quiet"]) == 0
    steps = sorted((catalog_dir / "out" / ".pipeline" / "steps").iterdir())
    assert len(steps) == 2
    for path in steps:  # named by the sha256 of the bytes received; only the service's own packet
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == path.name
        assert xmp.carried(data) == {}
    for t in exiftool(*sorted((catalog_dir / "out" / "lifestyle").glob("*.jpg"))):
        assert t["XMP-iptcExt:AISystemUsed"] == "LightX AI Background Generator, LightX AI Upscale"
        assert t["XMP-iptcExt:AISystemVersionUsed"] == "v1, v2"
        assert t["XMP-iptcExt:DigitalSourceType"] == TRAINED


def test_bucket_outputs_carry_it_and_a_change_rewrites_them_for_0_credits(own_metadata, s3, tmp_path, exiftool):
    s3.client.create_bucket(Bucket="cat")
    config = write_catalog(tmp_path / "catalog", 3, base_url=own_metadata.base_url,
                           config={"output": {"dir": "s3://cat/out"}, "state": {"dir": "state"}})
    assert main(["run", str(config), "--quiet"]) == 0

    def fetched(source_type: str) -> None:
        rows = Checkpoint.read_rows(tmp_path / "catalog" / "state" / "checkpoint.sqlite")
        for row in rows.values():
            got = s3.get("cat", f"out/{row.output_path}")
            data = got["Body"].read()
            path = tmp_path / row.output_path
            path.write_bytes(data)
            t = exiftool(path)[0]
            assert t["XMP-iptcExt:DigitalSourceType"] == source_type and t["IFD0:Make"] == own.EXIF_MAKE
            assert row.output_sha256 == hashlib.sha256(data).hexdigest() == got["Metadata"]["pipeline-sha256"]
            assert jpeg_segments(data)[-1] == jpeg_segments(sent(row))[-1]
    fetched(TRAINED)
    edit(config, lambda doc: doc["output"].update(disclosure={"source_type": "compositeWithTrainedAlgorithmicMedia"}))
    own_metadata.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert credits(own_metadata) == 0 and own_metadata.ledger_snapshot()["orders"] == {}
    fetched(COMPOSITE)


def test_with_every_output_link_gone_a_stripped_file_is_still_repaired_for_0_credits(catalog_dir, exiftool):
    """A private sandbox per run (`--sandbox`): the first run's output links die with it, so only
    the metadata pass can mend a file; a re-download is impossible and a new order would cost."""
    from pipeline.inputs.validate import validate
    from pipeline.run.engine import RunOptions, run
    from pipeline.sandbox import SandboxOptions
    config = write_catalog(catalog_dir, 3, base_url="http://127.0.0.1:9")

    def once() -> int:
        cfg, manifest, _ = validate(config)
        options = RunOptions(sandbox=True, quiet=True, sandbox_options=SandboxOptions(
            processing_s=0.05, own_metadata=True, seed=3))
        result = run(cfg, manifest, options, key=None)
        assert result.exit_code == 0
        return result.credits
    assert once() == 3
    out = catalog_dir / "out"
    stripped = out / "sku-001.jpg"
    stripped.write_bytes(xmp.disclose(stripped.read_bytes(), None))
    assert "XMP-iptcExt:DigitalSourceType" not in exiftool(stripped)[0]
    assert exiftool(stripped)[0]["XMP-xmp:CreatorTool"] == own.CREATOR_TOOL
    assert once() == 0
    tags = exiftool(stripped)[0]
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED and tags["XMP-xmp:CreatorTool"] == own.CREATOR_TOOL
    row = rows_of(config)["sku-001"]
    assert row.output_sha256 == hashlib.sha256(stripped.read_bytes()).hexdigest()


def test_a_run_stopped_between_a_rewrite_and_its_row_spends_nothing_next_time(catalog_dir, monkeypatch):
    """Files without a delivered record (made before the record existed), a disclosure change, and a
    run stopped right after the first file's rename, before its row's commit: the next run knows that
    file by its image data and mends its row. It would otherwise repair it, and with every output
    link gone (a private sandbox per run), a repair is a new order."""
    from pipeline.inputs.validate import validate
    from pipeline.run import disclose
    from pipeline.run.engine import RunOptions, run
    from pipeline.sandbox import SandboxOptions
    config = write_catalog(catalog_dir, 3, base_url="http://127.0.0.1:9")

    def once() -> int:
        cfg, manifest, _ = validate(config)
        options = RunOptions(sandbox=True, quiet=True, sandbox_options=SandboxOptions(processing_s=0.05, seed=3))
        result = run(cfg, manifest, options, key=None)
        assert result.exit_code == 0
        return result.credits
    assert once() == 3
    (catalog_dir / "out" / ".pipeline" / "delivered.sqlite").unlink()
    edit(config, lambda doc: doc["output"].update(disclosure={"source_type": "compositeWithTrainedAlgorithmicMedia"}))
    real = disclose.write_atomically

    def renamed_then_killed(path, data):
        real(path, data)
        raise KeyboardInterrupt  # as a kill would land: the file in place, its row not yet written
    monkeypatch.setattr(disclose, "write_atomically", renamed_then_killed)
    with pytest.raises(KeyboardInterrupt):
        once()
    monkeypatch.setattr(disclose, "write_atomically", real)
    assert once() == 0
    out = catalog_dir / "out"
    for row in rows_of(config).values():
        data = (out / row.output_path).read_bytes()
        assert row.state == "done" and row.output_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("variants", [False, True])
def test_a_changed_source_type_is_mended_a_chunk_at_a_time(own_metadata, catalog_dir, exiftool, monkeypatch, variants):
    # refresh mends CHUNK stale outputs at a time (a million stale files never have a Row each in memory):
    # with chunks of 2, every one of 5 outputs is still rewritten once and recorded, for 0 credits.
    from pipeline.run import disclose

    monkeypatch.setattr(disclose, "CHUNK", 2)
    extra = {"variants": [{"name": "studio", "steps": [{"tool": "background-generator", "prompt": "{title}"}]}],
             "output": {"filename": "{variant}/{id}.jpg"}}
    config = write_catalog(catalog_dir, 5, base_url=own_metadata.base_url, config=extra if variants else None)
    assert main(["run", str(config), "--quiet"]) == 0
    out = catalog_dir / "out"
    pattern = "studio/*.jpg" if variants else "*.jpg"

    def snapshot(_) -> dict:
        return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.glob(pattern))}

    before = snapshot(out)
    edit(config, lambda doc: doc["output"].update(disclosure={"source_type": "compositeWithTrainedAlgorithmicMedia"}))
    own_metadata.reset_ledger()
    assert main(["run", str(config), "--quiet"]) == 0
    assert credits(own_metadata) == 0
    after = snapshot(out)
    assert len(after) == len(before) == 5 and all(after[name][1] != before[name][1] for name in before)
    pictures = sorted(out.glob(pattern))
    assert len(pictures) == 5
    assert {t["XMP-iptcExt:DigitalSourceType"] for t in exiftool(*pictures)} == {COMPOSITE}
    for row in rows_of(config).values():
        if row.output_path:
            assert row.output_sha256 == hashlib.sha256((out / row.output_path).read_bytes()).hexdigest()
    assert main(["run", str(config), "--quiet"]) == 0
    assert snapshot(out) == after  # recorded: the next run reads nothing
