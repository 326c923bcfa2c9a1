"""Decide, before anything is sent, what each item needs: nothing, a resume, or a new order.

An item's fingerprint is the hash of its image bytes, its final prompt and the generation
parameters; a done item whose fingerprint and output file are unchanged costs nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path

from pipeline.plan.sources import file_sha256
from pipeline.store.checkpoint import Row
from pipeline.inputs.manifest import Item
from pipeline.run.states import State, check_move

GENERATION = "lightx-bg-v1"  # bump when what we ask the API for changes
INVALID_FINGERPRINT = "invalid"


def fingerprint(image_sha256: str, prompt: str, api_kind: str) -> str:
    raw = "\0".join((GENERATION, api_kind, image_sha256, prompt))
    return hashlib.sha256(raw.encode()).hexdigest()


KINDS = ("new", "changed", "unchanged", "resumable", "retry", "repair", "forced", "held", "rebuy")


@dataclass
class Plan:
    """What a run will do; `counts` keys: KINDS, and restart (a gone sandbox's orders; shown as resumable)."""

    jobs: list[tuple[Item, Row]] = field(default_factory=list)
    writes: list[Row] = field(default_factory=list)       # rows to insert or replace before starting
    counts: Counter = field(default_factory=Counter)
    in_flight: int = 0                                    # orders already created that may charge
    units: list = field(default_factory=list)             # with variants: run.chains.Unit, instead of jobs
    chain_credits: int = 0                                # with variants: one per step still to buy

    @property
    def credits_needed(self) -> int:
        """Orders this run will create if every one succeeds first time."""
        return self.chain_credits + sum(1 for _, row in self.jobs if row.state in (State.PENDING, State.UPLOADED))

    def kinds(self) -> dict[str, int]:
        """Items per kind of KINDS, every kind present: what `--dry-run` shows."""
        shown = {kind: self.counts[kind] for kind in KINDS}
        shown["resumable"] += self.counts["restart"]
        return shown


def plan(items: list[Item], rows: dict[str, Row], shas: dict[str, str], *, output_dir: Path | Mapping[str, int],
         api_kind: str, api_id: str, force: bool = False, only: frozenset[str] = frozenset(),
         sandbox: bool = False, legacy_kind: str | None = None) -> Plan:
    """Compare the manifest with the checkpoint; nothing is written here.

    `legacy_kind`: the base URL that older checkpoints (schema 1) made real-API fingerprints with; a
    row that matches it is the same item and is adopted, not bought again. `output_dir` is a local
    directory, or the listing {name: size} of a storage URL's outputs."""
    result = Plan()
    # plain strings: pathlib's joins cost more than the stat below
    out_dir = output_dir if isinstance(output_dir, Mapping) else os.fspath(output_dir)
    for item in items:
        if only and item.id not in only:
            continue
        sha = shas[item.id]
        fp = fingerprint(sha, item.prompt, api_kind)
        row = rows.get(item.id)
        adopted = (row is not None and legacy_kind is not None and row.fingerprint != fp
                   and row.fingerprint == fingerprint(sha, item.prompt, legacy_kind))
        if adopted:
            row = dataclasses.replace(row, fingerprint=fp)
        old = row
        kind, row = _decide(item, row, sha, fp, out_dir, api_id, force, sandbox)
        result.counts[kind] += 1
        if adopted or row is not old or kind == "repair":  # a row made anew, or one moved back
            result.writes.append(row)
        if kind not in ("unchanged", "held"):
            result.jobs.append((item, row))
        if row.state in (State.SUBMITTED, State.GENERATED):
            result.in_flight += 1
    order = {State.GENERATED: 0, State.SUBMITTED: 1, State.UPLOADED: 2, State.PENDING: 3}
    result.jobs.sort(key=lambda pair: order.get(pair[1].state, 4))  # collect what is paid for first
    return result


def decide(item: Item, row: Row | None, sha: str, fp: str, output_dir: str, api_id: str,
           force: bool, sandbox: bool) -> tuple[str, Row]:
    """(kind, the row to run) for one checkpoint row; each step of a variant is decided so (run.chains)."""
    return _decide(item, row, sha, fp, output_dir, api_id, force, sandbox)


def _decide(item: Item, row: Row | None, sha: str, fp: str, output_dir: str, api_id: str,
            force: bool, sandbox: bool) -> tuple[str, Row]:
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
    if not isinstance(output_dir, str):  # a bucket's listing: the object is there, at the size written
        return output_dir.get(item.output_name) == row.output_size
    path = os.path.join(output_dir, item.output_name)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size == row.output_size and st.st_mtime_ns == row.output_mtime_ns:
        return True
    return st.st_size == row.output_size and file_sha256(path) == row.output_sha256


def failed_rows(reasons: list[tuple[str | None, str]], valid_ids: set[str],
                rows: dict[str, Row]) -> list[Row]:
    """Rows recording items that cannot run (invalid, unreadable image) as failed, by (id, reason).

    Ids that cannot be stored (missing, repeated, or belonging to a valid item) are skipped; so is an
    item with an order that may still charge: it is collected once the item is valid again.
    """
    out: list[Row] = []
    seen = set(valid_ids)
    now = time.time()
    for item_id, reason in reasons:
        if not item_id or item_id in seen:
            continue
        seen.add(item_id)
        old = rows.get(item_id)
        if old and old.state in (State.SUBMITTED, State.GENERATED):
            continue
        out.append(Row(id=item_id, fingerprint=INVALID_FINGERPRINT, state=State.FAILED, error=reason,
                       created_at=old.created_at if old else None, finished_at=now))
    return out
