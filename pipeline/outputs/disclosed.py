"""How many delivered pictures lack the disclosure they must carry: `pipeline status`'s count.

The records of what each file carries (store/delivered.py) answer without reading a file; a local
file changed since it was written (by size or mtime) is read and its XMP checked.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.media.xmp import carried
from pipeline.plan.delivery import OFF_KEY, final_rows, settings_key, variant_of
from pipeline.store.checkpoint import Row
from pipeline.store.delivered import NAME, Delivered
from pipeline.store.tally import count_disclosed, done_rows


def disclosure_status(cfg: RunConfig, rows: dict[str, Row], checkpoints: list[Path]) -> dict:
    """{"outputs": delivered pictures, "lacking": those without the disclosure they must carry}."""
    return count_lacking(cfg, final_rows(cfg, rows), checkpoints)


def count_lacking(cfg: RunConfig, outputs: Iterable[Row], checkpoints: list[Path]) -> dict:
    """disclosure_status over delivered rows given one at a time (a million from SQLite, none kept)."""
    records = {}
    for path in checkpoints:  # each shard's state directory keeps its own records
        records.update(Delivered.read(path.parent)[0])
    seen = lacking = 0
    for row in outputs:
        key = settings_key(cfg, variant_of(cfg, row.id))
        record = records.get(row.output_path)
        ok = key != OFF_KEY and record is not None and record.key == key and record.sha256 == row.output_sha256
        if ok and cfg.output_url is None:
            ok = _unchanged_or_disclosed(cfg.output.dir / row.output_path, row.output_size, row.output_mtime_ns)
        seen += 1
        lacking += not ok
    return {"outputs": seen, "lacking": lacking, "source_type": cfg.output.disclosure["source_type"]}


def count_tallied(cfg: RunConfig, checkpoints: list[Path], check_all: bool = False) -> dict:
    """count_lacking over every done row of these checkpoints (a config without variants), counted by
    SQLite joined with the records: a million done rows, none held. Every record is checked; the
    files on disk, beyond tally.FILES_CHECKED of them and without `check_all`, in a random sample
    (then ``files_checked`` says how many were looked at)."""
    delivered = [path.parent / NAME for path in checkpoints if (path.parent / NAME).is_file()]
    if len(delivered) > 1:  # records in several state directories, the later winning: read them as before
        return count_lacking(cfg, (row for path in checkpoints for row in done_rows(path)), checkpoints)
    key = settings_key(cfg, None)
    prefix = os.path.join(cfg.output.dir, "")

    def intact(name: str, size: int | None, mtime: int | None) -> bool:
        return cfg.output_url is not None or _unchanged_or_disclosed(prefix + name, size, mtime)
    seen = lacking = checked = 0
    sampled = False
    for path in checkpoints:
        more = count_disclosed(path, delivered[0] if delivered else None, None if key == OFF_KEY else key, intact,
                               check_all=check_all)
        seen, lacking, checked, sampled = seen + more[0], lacking + more[1], checked + more[2], sampled or more[3]
    doc = {"outputs": seen, "lacking": lacking, "source_type": cfg.output.disclosure["source_type"]}
    if sampled:
        doc["files_checked"] = checked
    return doc


def _unchanged_or_disclosed(path: Path | str, size: int | None, mtime_ns: int | None) -> bool:
    try:
        st = os.stat(path)
        if st.st_size == size and st.st_mtime_ns == mtime_ns:
            return True
        with open(path, "rb") as fh:
            return "DigitalSourceType" in carried(fh.read())
    except OSError:
        return False
