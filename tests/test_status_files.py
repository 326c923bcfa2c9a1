"""`pipeline status` counts every delivered file's disclosure record, and beyond tally.FILES_CHECKED
outputs looks at a random sample of the files themselves, saying so; `--check-files` looks at every one."""
from __future__ import annotations

import json
import sqlite3

from helpers import write_catalog
from pipeline.cli import main
from pipeline.media import xmp
from pipeline.store import tally
from pipeline.store.checkpoint import Checkpoint

N = 12


def _status(config, capsys, *flags) -> dict:
    capsys.readouterr()
    assert main(["status", str(config), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)["disclosure"]


def test_status_samples_the_files_beyond_its_limit_and_checks_every_one_when_asked(sandbox, catalog_dir, capsys,
                                                                                  monkeypatch):
    config = write_catalog(catalog_dir, N, base_url=sandbox.base_url)
    assert main(["run", str(config), "--quiet"]) == 0
    out, state = catalog_dir / "out", catalog_dir / "out" / ".pipeline"
    assert _status(config, capsys) == {"outputs": N, "lacking": 0, "source_type": "trainedAlgorithmicMedia"}
    for row in Checkpoint.read_rows(state / "checkpoint.sqlite").values():  # every file's XMP stripped by hand
        path = out / row.output_path
        path.write_bytes(xmp.disclose(path.read_bytes(), None))
    with sqlite3.connect(state / "delivered.sqlite") as conn:  # and one record gone
        conn.execute("DELETE FROM disclosed WHERE name = 'sku-000.jpg'")
    assert _status(config, capsys) == {"outputs": N, "lacking": N, "source_type": "trainedAlgorithmicMedia"}

    monkeypatch.setattr(tally, "FILES_CHECKED", 4)
    sampled = _status(config, capsys)
    # sku-000 lacks by its record; of the others, those in the sample lack by their file
    assert 1 <= sampled.pop("files_checked") <= 4
    assert sampled == {"outputs": N, "lacking": sampled["lacking"], "source_type": "trainedAlgorithmicMedia"}
    assert sampled["lacking"] == 1 + _status(config, capsys)["files_checked"]
    capsys.readouterr()
    assert main(["status", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"disclosure: {sampled['lacking']} of {N} delivered pictures lack the AI-disclosure metadata" in text
    assert f"files on disk: a random sample of {sampled['lacking'] - 1:,} of {N:,} looked at (--check-files" in text
    assert _status(config, capsys, "--check-files") == {"outputs": N, "lacking": N,
                                                        "source_type": "trainedAlgorithmicMedia"}
