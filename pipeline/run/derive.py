"""Renditions of every delivered picture (`output.renditions`), made locally at the end of a run: 0 credits.

    made = derive(cfg, items, rows, outputs)   # in finish, before the results table

A rendition file is made again only when its record (store/delivered.py) does not match: the
output it comes from changed (its sha256), the rendition's settings or the disclosure changed, or
the file is gone or was changed. So adding, changing or removing one rendition touches only that
rendition's files, and an unchanged rerun touches none. A big catalog's renditions are made in a
pool of worker processes, one per core; a few are made in this process.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pipeline.errors import OutputError
from pipeline.inputs.config import RunConfig
from pipeline.inputs.delivery import Rendition, renditions_of
from pipeline.inputs.manifest import Item
from pipeline.media.renditions import Task, make
from pipeline.plan.delivery import Delivered as Output, SettingsKeys, disclosure_for, final_outputs
from pipeline.run.children import become_worker, ctrl_c_ignored
from pipeline.store.checkpoint import Row
from pipeline.store.delivered import Delivered, Made
from pipeline.store.remote import Remote, StorageError

log = logging.getLogger(__name__)
POOL_FROM = 24      # renditions to make before a process pool pays for its start
BATCH = 256         # renditions per round: sources read and results recorded as they come
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def derive(cfg: RunConfig, items: list[Item], rows: dict[str, Row], outputs: Remote | None = None) -> int:
    """Make the renditions that are missing or stale, drop those no longer configured; returns how many were made."""
    wanted = renditions_of(cfg)
    store = Delivered.open(cfg.state_dir)
    try:
        made = store.made()
        _drop(cfg, store, made, {r.name for r in wanted}, outputs)
        if not wanted:
            return 0
        keys, out_dir = SettingsKeys(cfg), os.fspath(cfg.output.dir)
        specs = {r.name: r.key for r in wanted}
        todo = [(out, r, spec) for out in final_outputs(cfg, items, rows) for r in wanted
                if not _current(cfg, out_dir, made.get((r.name, out.name)), out, r,
                                spec := f"{specs[r.name]}|{keys[out.variant]}")]
        if not todo:
            return 0
        moved = [record.path for out, r, _ in todo if (record := made.get((r.name, out.name)))
                 and record.path != r.path_of(out.name)]  # another format: the old file goes
        _remove(cfg, outputs, moved)
        return _make_all(cfg, store, todo, outputs)
    finally:
        store.close()


def _current(cfg: RunConfig, out_dir: str, record: Made | None, out: Output, r: Rendition, spec: str) -> bool:
    # the spec names the format, so the same spec means the same path (<name>/<output stem>.<ext>)
    if record is None or record.source_sha256 != out.row.output_sha256 or record.spec != spec:
        return False
    if cfg.output_url is not None:
        return True  # a bucket: its record is trusted, as the outputs' own are after a listing
    try:
        st = os.stat(os.path.join(out_dir, record.path))
    except OSError:
        return False
    return st.st_size == record.size and st.st_mtime_ns == record.mtime_ns


def _make_all(cfg: RunConfig, store: Delivered, todo: list, outputs: Remote | None) -> int:
    workers = min(os.cpu_count() or 1, max(1, len(todo) // 8))
    pool = None
    if len(todo) >= POOL_FROM and workers > 1:
        try:
            pool = _pool(workers)
        except OSError as exc:  # no process can be started (out of memory, a pod's pids limit): made here
            log.warning("renditions: no worker process could be started (%s); making them in this process", exc)
    made: list[int] = []
    try:
        for start in range(0, len(todo), BATCH):
            made.append(_round(cfg, store, todo[start:start + BATCH], outputs, pool))
    except BrokenProcessPool as exc:  # a worker killed (out of memory?): the rest waits for the next run
        log.error("renditions: a worker process died (%s); those not made are made at the next run", exc)
    except BaseException:  # Ctrl-C: the renditions queued are not made now, and the workers end at once
        if pool is not None:
            pool.shutdown(cancel_futures=True)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown()
    log.info("renditions: %d made (no credits)", sum(made))
    return sum(made)


def _pool(workers: int) -> ProcessPoolExecutor:
    """The rendition workers, started now. Ctrl-C reaches the whole process group, and a worker that
    took it would print its traceback on the user's terminal: they ignore it from their first
    instruction on (a spawned one imports for a while before its initializer runs), and the run ends them."""
    # fork when this process runs no other thread (the CLI by now): quick, and nothing re-imported;
    # else spawn, as fork would copy other threads' locks half-held
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=become_worker,
                               initargs=(os.getpid(),))
    try:
        with ctrl_c_ignored():  # a child inherits "ignored", through exec too; each submit starts one worker
            for _ in range(workers):
                pool.submit(os.getpid)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # the workers that did start end
        raise
    return pool


def _round(cfg: RunConfig, store: Delivered, batch: list, outputs: Remote | None, pool) -> int:
    """One batch: sources read, renditions made (in the pool, if any), written, recorded."""
    tasks = _tasks(cfg, batch, outputs)
    done = pool.map(make, tasks, chunksize=4) if pool else map(make, tasks)
    entries = []
    for (out, r, spec), result in zip(batch, done):
        if isinstance(result, str):
            log.warning("rendition %s of %s not made: %s", r.name, out.name, result)
            continue
        size, mtime_ns, data = result
        if outputs is not None:
            _put(outputs, r, r.path_of(out.name), data)
        entries.append((r.name, out.name, Made(out.row.output_sha256, spec, r.path_of(out.name), size, mtime_ns)))
    store.save_made(entries)
    return len(entries)


def _tasks(cfg: RunConfig, batch: list, outputs: Remote | None) -> list[Task]:
    if outputs is None:
        return [Task(r, disclosure_for(cfg, out.item, out.variant), source=str(cfg.output.dir / out.name),
                     target=str(cfg.output.dir / r.path_of(out.name))) for out, r, _ in batch]
    names = list(dict.fromkeys(out.name for out, _, _ in batch))
    got = outputs.read_many(names)
    return [Task(r, disclosure_for(cfg, out.item, out.variant),
                 data=got[out.name] if isinstance(got.get(out.name), bytes) else b"") for out, r, _ in batch]


def _put(outputs: Remote, r: Rendition, name: str, data: bytes) -> None:
    try:
        outputs.put(name, data, content_type=CONTENT_TYPES[r.format])
    except (OutputError, StorageError) as exc:
        raise OutputError(f"cannot write rendition {name}: {exc}") from None


def _drop(cfg: RunConfig, store: Delivered, made: dict, names: set[str], outputs: Remote | None) -> None:
    """Files of renditions no longer configured, as they were made (a file changed since is left)."""
    gone = [(key, record) for key, record in made.items() if key[0] not in names]
    if not gone:
        return
    _remove(cfg, outputs, [record.path for _, record in gone if _unchanged(cfg, record)])
    store.forget_made(key for key, _ in gone)
    log.info("renditions: %d files of removed renditions deleted", len(gone))


def _unchanged(cfg: RunConfig, record: Made) -> bool:
    if cfg.output_url is not None:
        return True
    try:
        st = os.stat(cfg.output.dir / record.path)
    except OSError:
        return False
    return st.st_size == record.size and st.st_mtime_ns == record.mtime_ns


def _remove(cfg: RunConfig, outputs: Remote | None, paths: list[str]) -> None:
    if outputs is not None:
        outputs.remove(paths)
        return
    for path in paths:
        try:
            (cfg.output.dir / path).unlink()
        except OSError:
            continue
