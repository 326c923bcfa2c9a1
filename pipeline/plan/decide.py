"""The one rule that decides a checkpoint row: nothing, a resume, a repair, or a new order.

    kind, row = decide(item, old_row, input_sha256, fp, output_dir, api_id, force, sandbox)

Every row goes through it: an item of a config without variants (``{id}``) and each step of a
variant (``{id}/{variant}/{n}``) alike. Nothing is written here.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from pipeline.inputs.manifest import Item
from pipeline.plan.sources import file_sha256
from pipeline.run.states import State, check_move
from pipeline.store.checkpoint import Row

KINDS = ("new", "changed", "unchanged", "resumable", "retry", "repair", "forced", "held", "rebuy")
IDLE = ("unchanged", "held")  # kinds with nothing to run: 0 credits
# What `quick_unchanged` reads of a row, so a done row with an intact output never becomes a Row.
QUICK_COLUMNS = ("fingerprint", "state", "output_path", "output_sha256", "output_size", "output_mtime_ns")


def quick_unchanged(values: tuple, output_name: str, fp: str, output_dir: str | Mapping[str, int]) -> bool:
    """Whether `decide` (not forced) would answer "unchanged" for a row of QUICK_COLUMNS, by the cheap
    test alone: done, same fingerprint, its output where and as it was written. False: ask `decide`."""
    fingerprint, state, path, sha, size, mtime = values
    if fingerprint != fp or state != State.DONE or path != output_name or not sha:
        return False
    return _as_written(output_dir, output_name, size, mtime) is True


def _as_written(output_dir: str | Mapping[str, int], name: str, size: int | None, mtime: int | None) -> bool | None:
    """True: the output is there as it was written; False: gone or of another size; None: its size,
    another mtime (a touched file: only its sha256 tells). A bucket's listing knows sizes alone."""
    if not isinstance(output_dir, str):
        return output_dir.get(name) == size
    try:
        st = os.stat(os.path.join(output_dir, name))
    except OSError:
        return False
    if st.st_size != size:
        return False
    return True if st.st_mtime_ns == mtime else None


def decide(item: Item, row: Row | None, sha: str, fp: str, output_dir: str | Mapping[str, int], api_id: str,
           force: bool, sandbox: bool) -> tuple[str, Row]:
    """(kind, the row to run) for one checkpoint row; `output_dir` a local directory as a str, or a
    bucket's listing {name: size}."""
    if row is None:
        return "new", Row(id=item.id, fingerprint=fp, image_sha256=sha)
    if force:
        return "forced", Row(id=item.id, fingerprint=fp, image_sha256=sha, created_at=row.created_at)
    if row.fingerprint != fp:
        return "changed", Row(id=item.id, fingerprint=fp, image_sha256=sha, created_at=row.created_at)
    if row.state == State.FAILED:
        return "retry", _reset(row)
    if sandbox and row.api_id and row.api_id != api_id and row.state in (State.UPLOADED, State.SUBMITTED,
                                                                          State.GENERATED):
        # That sandbox is gone with its process, and its orders and output links with it; they cost nothing.
        return "restart", _reset(row)
    if row.state == State.REVIEW and _output_intact(row, item, output_dir):
        return "held", row  # waits for `pipeline review`; costs nothing
    if row.state == State.PENDING and row.review == "rejected":
        return "rebuy", row  # rejected in `pipeline review`: one order again
    if row.state in (State.DONE, State.REVIEW):
        if _output_intact(row, item, output_dir):
            return "unchanged", row
        if row.output_url and row.api_id == api_id:
            check_move(row.state, State.GENERATED)
            return "repair", dataclasses.replace(row, state=State.GENERATED)
        return "repair", _reset(row)
    return ("new" if row.never_ordered else "resumable"), row


def _reset(row: Row) -> Row:
    return Row(id=row.id, fingerprint=row.fingerprint, image_sha256=row.image_sha256,
               attempts=row.attempts, created_at=row.created_at)


def _output_intact(row: Row, item: Item, output_dir: str | Mapping[str, int]) -> bool:
    if row.output_path != item.output_name or not row.output_sha256:
        return False
    written = _as_written(output_dir, item.output_name, row.output_size, row.output_mtime_ns)
    if written is None:  # a local file of its size, touched since: its bytes decide
        return file_sha256(os.path.join(output_dir, item.output_name)) == row.output_sha256
    return written
