"""results.csv and .parquet of a big catalog, streamed from the checkpoint a batch at a time: the same
table as the whole-table writer made (#21). Correctness only: the bench measures time and memory."""
from __future__ import annotations

import csv
import hashlib
import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from helpers import results_sample
from pipeline.outputs import results
from pipeline.store import rowview
from pipeline.store.checkpoint import Checkpoint
from pipeline.store.rowview import RowView

AWKWARD = 'a "quoted", comma\nand newline — ünïcode'
PLAIN = 'no line break, but "quotes", commas'
# sha256 of results.csv as main a37d6fa (the whole-table writer) wrote it for results_sample(20_000, ...)
WHOLE_TABLE = {AWKWARD: "d789767d926cb880887a5f0c8b81889d3a1ef1f49028a5db55c3d7f0551d95e0",
               PLAIN: "167ae6d104ebd38d7fd82f9ac5733743dab11a8fbb99847d6a43f0cb464e5635"}


@pytest.mark.parametrize("awkward", [AWKWARD, PLAIN])
def test_a_streamed_table_is_the_whole_tables_byte_for_byte(tmp_path, monkeypatch, awkward):
    cfg, manifest, rows = results_sample(tmp_path, 20_000, awkward)
    monkeypatch.setattr(rowview, "BATCH", 1237)  # batches that end mid-way through the states
    monkeypatch.setattr(results, "PARQUET_BLOCK", 1 << 16)  # several row groups
    ckpt = Checkpoint.open(tmp_path / "checkpoint.sqlite")
    try:
        ckpt.insert(list(rows.values()))
        view = RowView(ckpt)  # as a run reads them: from SQLite, a batch at a time
        csv_path = results.write(cfg, manifest, view, force=True)
    finally:
        ckpt.close()
    data = csv_path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == WHOLE_TABLE[awkward]

    # The same bytes as the table made whole from today's columns.
    cols = results.columns(manifest, rows)
    whole = io.StringIO(newline="")
    writer = csv.writer(whole)
    writer.writerow(cols)
    writer.writerows(zip(*cols.values()))
    assert data == whole.getvalue().encode("utf-8")

    parquet = pq.ParquetFile(csv_path.with_suffix(".parquet"))
    assert parquet.metadata.num_row_groups > 1 and parquet.metadata.num_rows == 20_003
    types = {name: pa.string() for name in cols}
    types.update({name: pa.int64() for name in results.INT_COLUMNS},
                 **{name: pa.float64() for name in results.FLOAT_COLUMNS})
    read_whole = pacsv.read_csv(pa.BufferReader(data), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                                     quoted_strings_can_be_null=True,
                                                                     null_values=[""]))
    assert parquet.read().equals(read_whole)


def test_a_row_view_reads_what_the_run_holds_and_what_sqlite_holds(tmp_path):
    cfg, manifest, rows = results_sample(tmp_path, 300, PLAIN)
    ckpt = Checkpoint.open(tmp_path / "checkpoint.sqlite")
    try:
        stored = {key: row for n, (key, row) in enumerate(rows.items()) if n % 2}
        ckpt.insert(list(stored.values()))
        view = RowView(ckpt)
        held = next(row for key, row in rows.items() if key not in stored)
        view[held.id] = held  # planned this run, not yet inserted
        assert view[held.id] is held and held.id in view and "nope" not in view
        assert len(view) == len(stored) + 1 and set(view) == {*stored, held.id}
        assert {row.id for row in view.values()} == set(view)
        some = list(stored)[:5]
        assert view.get(some[0]).state == stored[some[0]].state and view.get("nope") is None
        found = view.fetch([*some, held.id, "nope"], ("state", "output_path"))
        assert found == {key: (r.state, r.output_path) for key, r in rows.items() if key in {*some, held.id}}
        ckpt.save(view[some[0]], error="changed")  # a write is seen by the next read, before its commit
        assert view[some[0]].error == "changed"
    finally:
        ckpt.close()
