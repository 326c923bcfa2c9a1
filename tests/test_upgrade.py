"""Catalogs finished by an older release (tests/fixtures/state-*, made by make_state.py before #25)
cost nothing when today's code runs them again: no credit, no request. Their delivered pictures get
the AI-disclosure XMP (#23) once, metadata only; steps/ and every later rerun touch nothing."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from helpers import jpeg_segments
from pipeline.cli import main
from pipeline.media.xmp import carried, disclose

FIXTURES = Path(__file__).parent / "fixtures"


def outputs_of(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every output picture under out/ (steps/ included, the report's thumbnails not): bytes and mtime_ns."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted((root / "out").rglob("*"))
            if p.is_file() and p.parent.name != "thumbs" and (p.suffix == ".jpg" or p.parent.name == "steps")}


@pytest.mark.parametrize("name, rows", [("state-plain", 3), ("state-variants", 6)])
def test_a_catalog_finished_by_the_older_release_costs_nothing(sandbox, tmp_path, monkeypatch, name, rows):
    root = tmp_path / name
    # shutil.copy, not copy2: a fresh checkout's files have new mtimes, so outputs are judged by hash
    shutil.copytree(FIXTURES / name, root, copy_function=shutil.copy)
    before = outputs_of(root)
    assert len(before) == {"state-plain": 3, "state-variants": 9}[name]
    monkeypatch.setenv("LIGHTX_BASE_URL", sandbox.base_url)
    assert main(["run", str(root / "catalog.yaml"), "--quiet"]) == 0
    ledger = sandbox.ledger_snapshot()
    assert ledger["credits"] == 0 and ledger["orders"] == {}
    assert ledger["requests"] == {}  # no upload, no submit, no status check, no output downloaded
    after = outputs_of(root)
    assert after.keys() == before.keys()
    for name, (data, _) in after.items():
        old = before[name][0]
        if "/steps/" in f"/{name}":  # a chain's intermediate outputs: as received
            assert data == old
            continue
        assert carried(data)["DigitalSourceType"].endswith("/trainedAlgorithmicMedia")
        assert disclose(data, None) == old and jpeg_segments(data)[-1] == jpeg_segments(old)[-1]
    sandbox.reset_ledger()
    assert main(["run", str(root / "catalog.yaml"), "--quiet"]) == 0
    assert sandbox.ledger_snapshot()["requests"] == {} and outputs_of(root) == after
    with open(root / "out" / "results.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == rows and {row["status"] for row in table} == {"done"}
