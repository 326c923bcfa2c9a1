"""The disclosure XMP of delivered pictures: added as each is downloaded, kept right on every rerun.

    discloser = Discloser(cfg, items)          # the download stage: data = discloser.apply(name, data)
    mended = refresh(cfg, ckpt, rows, items, outputs, listing)   # prepare, before the plan: 0 credits
    discloser.record(cfg, rows, items)         # finish: what this run wrote, so a rerun reads nothing

A rerun reads a done output only when its record (store/delivered.py) does not match: the settings
changed (`output.disclosure`, a variant's tools), the file changed since it was written, or it was
made before this code. The file is then rewritten with the disclosure it must carry (metadata only,
image data untouched) and its row gets the new sha256, size and mtime, so the planner finds it
intact. A file whose image data is not the one delivered is left to the planner (a repair).
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os

from pipeline.errors import CheckpointError, OutputError
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Item
from pipeline.media.xmp import XmpError, disclose, pixels_id
from pipeline.store.names import FINGERPRINT_META, SHA256_META
from pipeline.plan.delivery import Delivered as Output, SettingsKeys, disclosure_for, final_batches, final_outputs
from pipeline.plan.delivery import settings_key
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.store.delivered import NAME as DELIVERED_NAME, Delivered, Disclosed
from pipeline.store.remote import Remote, StorageError
from pipeline.store.rowview import RowView, chunks, rows_of

log = logging.getLogger(__name__)
READ_BATCH = 64  # objects fetched at once from a bucket
CHUNK = 4000  # stale outputs mended at a time (refresh)


class Discloser:
    """The download stage's hook: the delivered picture with its disclosure, by output name."""

    def __init__(self, cfg: RunConfig, items: list[Item]):
        self.cfg = cfg
        self._items = items
        self._by_name: dict[str, tuple[Item, object]] | None = None  # made at the first download
        self.written: dict[str, tuple[str, str]] = {}  # name -> (settings key, pixels id), this run

    @property
    def _origin(self) -> dict[str, tuple[Item, object]]:
        """output name -> (item, variant); a no-op rerun downloads nothing, so never builds it for 1M items."""
        if self._by_name is None:
            self._by_name = {}
            for item in self._items:
                if self.cfg.variants:
                    self._by_name.update(zip(item.output_names, ((item, v) for v in self.cfg.variants)))
                else:
                    self._by_name[item.output_name] = (item, None)
        return self._by_name

    def apply(self, name: str, data: bytes) -> bytes:
        """`data` with the disclosure it must carry; as received when it cannot take one (logged)."""
        item, variant = self._origin.get(name, (None, None))
        if item is None:
            return data
        try:
            out = disclose(data, disclosure_for(self.cfg, item, variant))
        except XmpError as exc:
            log.warning("%s: no disclosure written: %s", name, exc)
            return data
        except ValueError:
            return data  # not a whole JPEG or PNG: the decode check says so
        self.written[name] = (settings_key(self.cfg, variant), pixels_id(out))
        return out

    def record(self, cfg: RunConfig, rows: dict[str, Row], items: list[Item]) -> None:
        """Remember what this run's downloads carry (by the sha256 the checkpoint took of them)."""
        if not self.written:
            return
        mine = list({id(item): item for item, _ in map(self._origin.get, self.written) if item is not None}.values())
        entries = [(out.name, Disclosed(out.row.output_sha256, *self.written[out.name]))
                   for out in final_outputs(cfg, mine, rows) if out.name in self.written]
        store = Delivered.open(cfg.state_dir)
        try:
            store.save_disclosed(entries)
        finally:
            store.close()


def refresh(cfg: RunConfig, ckpt: Checkpoint, rows: dict[str, Row], items: list[Item],
            outputs: Remote | None = None, listing: dict[str, int] | None = None) -> int:
    """Bring every done output's disclosure up to date for 0 credits; returns how many files were rewritten.
    The stale outputs are mended CHUNK at a time, their rows, records and new records held for that
    chunk only: a million stale files (a changed `output.disclosure`, or outputs made before #23 that
    have no record) never have a Row each in memory at once."""
    store = Delivered.open(cfg.state_dir)
    rewritten = 0
    try:
        for stale in _stale_chunks(cfg, ckpt, store, rows, items, listing):
            rewritten += _mend_chunk(cfg, ckpt, store, stale, outputs, listing)
    finally:
        store.close()
    if rewritten:
        log.info("disclosure metadata rewritten in %d delivered files (no credits)", rewritten)
    return rewritten


def _stale_chunks(cfg: RunConfig, ckpt: Checkpoint, store: Delivered, rows, items: list[Item],
                  listing: dict[str, int] | None):
    """Lists of at most CHUNK stale outputs, each with the Row that save() changes."""
    keys = SettingsKeys(cfg)
    out_dir = os.fspath(cfg.output.dir)
    joined = _stale_joined(cfg, ckpt, rows, items, keys[None], out_dir, listing)
    if joined is not None:  # SQLite found them: only their items are held until now
        for start in range(0, len(joined), CHUNK):
            part = joined[start:start + CHUNK]
            found = rows_of(rows, [item.id for item in part])
            yield [Output(item.output_name, found[item.id], item, None) for item in part]
        return
    # a batch of rows and their records at a time: a million done rows are never all held
    for outs in final_batches(cfg, items, rows):
        records = store.disclosed_of([out.name for out in outs])
        stale = [out for out in outs if not _current(out, records.get(out.name), keys[out.variant], out_dir, listing)]
        for start in range(0, len(stale), CHUNK):
            part = stale[start:start + CHUNK]
            found = rows_of(rows, [out.row.id for out in part])  # the stale ones' own Rows, which save() changes
            yield [out._replace(row=found[out.row.id]) for out in part]


def _mend_chunk(cfg: RunConfig, ckpt: Checkpoint, store: Delivered, stale: list[Output], outputs: Remote | None,
                listing: dict[str, int] | None) -> int:
    """Read, rewrite and record one chunk of stale outputs; how many files were rewritten."""
    records = store.disclosed_of([out.name for out in stale])
    entries, rewritten = [], 0
    read = _read(cfg, stale, outputs)  # a batch of files' bytes at a time, never all of them
    while batch := [(out, data, *_identity(data)) for out, data in itertools.islice(read, READ_BATCH)]:
        _remember_pixels(store, batch, records)
        for out, data, sha, pixels in batch:
            entry, changed = _mend(cfg, ckpt, out, data, sha, pixels, records.get(out.name), outputs, listing)
            if entry is not None:
                entries.append((out.name, entry))
            rewritten += changed
    store.save_disclosed(entries)
    return rewritten


def _stale_joined(cfg: RunConfig, ckpt: Checkpoint, rows, items: list[Item], key: str, out_dir: str,
                  listing: dict[str, int] | None) -> list[Item] | None:
    """The items of `refresh`'s stale outputs without variants, each batch of rows read joined with its records by
    SQLite (delivered.sqlite attached): only a file's stat is left to Python. None: not possible here
    (variants, rows this run holds that are not stored yet, a transaction open): the general path."""
    if cfg.variants or not isinstance(rows, RowView) or rows.changed:
        return None
    try:
        ckpt.query("ATTACH DATABASE ? AS delivered", (str(cfg.state_dir / DELIVERED_NAME),))
    except CheckpointError:
        return None
    stale: list[Item] = []
    stat = os.stat
    try:
        for chunk in chunks(items):
            marks = ", ".join("?" * len(chunk))
            found = {r[0]: r[1:] for r in ckpt.query(
                "SELECT i.id, i.output_path, i.output_size, i.output_mtime_ns, EXISTS (SELECT 1 FROM "
                "delivered.disclosed d WHERE d.name = i.output_path AND d.sha256 = i.output_sha256 AND d.key = ?) "
                "FROM items i "
                f"WHERE i.state = 'done' AND i.id IN ({marks})", (key, *(item.id for item in chunk)))}
            for item in chunk:
                values = found.get(item.id)
                if values is None or values[0] != item.output_name:
                    continue  # not delivered
                name, size, mtime, recorded = values
                if recorded:
                    if listing is not None:
                        if listing.get(name) == size:
                            continue
                    else:
                        try:
                            st = stat(os.path.join(out_dir, name))
                        except OSError:
                            continue  # gone: the planner's repair
                        if st.st_size == size and st.st_mtime_ns == mtime:
                            continue
                stale.append(item)
    finally:
        ckpt.query("DETACH DATABASE delivered", ())
    return stale


def _current(out: Output, record: Disclosed | None, key: str, out_dir: str,
             listing: dict[str, int] | None) -> bool:
    """Whether the record says the file is as written with today's settings: nothing to read."""
    row = out.row
    if record is None or record.sha256 != row.output_sha256 or record.key != key:
        return False
    if listing is not None:
        return listing.get(out.name) == row.output_size
    try:
        st = os.stat(os.path.join(out_dir, out.name))
    except OSError:
        return True  # gone: the planner's repair
    return st.st_size == row.output_size and st.st_mtime_ns == row.output_mtime_ns


def _read(cfg: RunConfig, stale: list[Output], outputs: Remote | None):
    """(output, bytes) of each stale file that can be read; a missing one is the planner's."""
    if outputs is None:
        for out in stale:
            try:
                yield out, (cfg.output.dir / out.name).read_bytes()
            except OSError:
                continue
        return
    for start in range(0, len(stale), READ_BATCH):
        batch = stale[start:start + READ_BATCH]
        got = outputs.read_many([out.name for out in batch])
        for out in batch:
            data = got.get(out.name)
            if isinstance(data, bytes):
                yield out, data


def _identity(data: bytes) -> tuple[str, str | None]:
    """(sha256 of the file, media.xmp.pixels_id of its image data or None when it is not a whole picture)."""
    try:
        pixels = pixels_id(data)
    except ValueError:
        pixels = None
    return hashlib.sha256(data).hexdigest(), pixels


def _remember_pixels(store: Delivered, batch: list, records: dict[str, Disclosed]) -> None:
    """Before any file of `batch` is rewritten, record the image data of each one that is exactly as
    delivered (its sha256 is the row's) but has no record of it: a run stopped between a file's rename
    and its row's commit then finds that file next time by its image data and mends its row, where it
    would otherwise repair it (a new order, once the output link is gone). Key "": nothing applied yet."""
    remembered = []
    for out, _, sha, pixels in batch:
        if sha != out.row.output_sha256 or pixels is None:
            continue  # not the file delivered: _mend leaves it to the planner
        record = records.get(out.name)
        if record is None or record.pixels != pixels:
            records[out.name] = Disclosed(sha, "", pixels)
            remembered.append((out.name, records[out.name]))
    store.save_disclosed(remembered)


def _mend(cfg: RunConfig, ckpt: Checkpoint, out: Output, data: bytes, sha: str, pixels: str | None,
          record: Disclosed | None, outputs: Remote | None,
          listing: dict[str, int] | None) -> tuple[Disclosed | None, bool]:
    """Rewrite one file's disclosure if it needs it; (its new record, whether it was rewritten).
    `sha` and `pixels` are `_identity(data)`."""
    row = out.row
    if pixels is None:
        return None, False  # not a whole picture: the planner's repair
    if sha != row.output_sha256 and (record is None or record.pixels != pixels):
        return None, False  # other image data than was delivered: the planner repairs it
    try:
        new = disclose(data, disclosure_for(cfg, out.item, out.variant))
    except XmpError as exc:
        log.warning("%s: disclosure not written: %s", out.name, exc)
        return None, False
    key = settings_key(cfg, out.variant)
    if new is data and sha == row.output_sha256:
        return Disclosed(sha, key, pixels), False
    new_sha = hashlib.sha256(new).hexdigest()
    if outputs is None:
        st = write_atomically(cfg.output.dir / out.name, new) if new is not data else \
            os.stat(cfg.output.dir / out.name)
        mtime = st.st_mtime_ns
    else:
        if new is not data:
            _put(outputs, out, new, new_sha)
            listing[out.name] = len(new)  # what the planner compares the row with
        mtime = None
    ckpt.save(row, output_sha256=new_sha, output_size=len(new), output_mtime_ns=mtime)
    return Disclosed(new_sha, key, pixels), new is not data


def _put(outputs: Remote, out: Output, data: bytes, sha: str) -> None:
    try:
        outputs.put(out.name, data, content_type="image/jpeg" if out.name.lower().endswith((".jpg", ".jpeg"))
                    else "image/png", metadata={FINGERPRINT_META: out.row.fingerprint, SHA256_META: sha})
    except (OutputError, StorageError) as exc:
        raise OutputError(f"cannot rewrite the disclosure of {out.name}: {exc}") from None

