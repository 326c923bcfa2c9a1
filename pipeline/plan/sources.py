"""The bytes each item starts from: sha256 of every source image, fetched first when remote.

    shas, problems = asyncio.run(hash_sources(cfg, items, ckpt))

Local files go through a stat cache in the checkpoint, so an unchanged catalog is not read again;
`http(s)` images are fetched once per URL (`plan.pictures`: at once, timed out, retried, conditional
requests) and kept in `state_dir/sources/<sha256>`, where the upload stage reads them.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Item
from pipeline.errors import FetchError
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Checkpoint
from pipeline.store.kept import drop_kept, read_kept
from pipeline.store.remote import Remote, StorageError, describe, is_remote

def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_local_images(items: list[Item], ckpt: Checkpoint | None) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({path: sha256}, {item id: problem}); unchanged files are not re-read (stat cache)."""
    cache = ckpt.file_hashes() if ckpt else {}
    hashes: dict[str, str] = {}
    problems: dict[str, str] = {}
    fresh: list[tuple[str, int, int, str]] = []
    for item in items:
        if item.image_path is None:
            continue
        key = str(item.image_path)
        if key in hashes:
            continue
        try:
            st = os.stat(key)
            known = cache.get(key)
            if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
                hashes[key] = known[2]
            else:
                hashes[key] = file_sha256(item.image_path)
                fresh.append((key, st.st_size, st.st_mtime_ns, hashes[key]))
        except OSError as exc:
            problems[item.id] = f"cannot read image {item.image}: {exc.strerror or exc}"
    if ckpt and fresh:
        ckpt.save_file_hashes(fresh)
    return hashes, problems


async def hash_sources(cfg: RunConfig, items: list[Item], ckpt: Checkpoint) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 of every item's source bytes by item id, and a problem by item id for those without."""
    by_path, problems = await asyncio.to_thread(hash_local_images, items, ckpt)
    shas = {i.id: by_path[str(i.image_path)] for i in items
            if i.image_path is not None and i.id not in problems}
    stored = [i for i in items if i.image_url and is_remote(i.image_url)]
    if stored:
        found, lost = await asyncio.to_thread(hash_stored_images, cfg, stored, ckpt)
        shas.update(found)
        problems.update(lost)
    remote = [i for i in items if i.image_url and not is_remote(i.image_url)]
    if remote:
        from pipeline.plan.pictures import fetch_pictures  # aiohttp, imported by runs that fetch pictures only
        fetched = await fetch_pictures(cfg, {i.image_url for i in remote})
        for item in remote:
            got = fetched[item.image_url]
            if isinstance(got, FetchError):
                problems[item.id] = f"cannot fetch image {item.image_url}: {got}"
            else:
                shas[item.id] = got
    return shas, problems


STORED_BATCH = 64  # objects fetched at once while hashing: bounds memory, keeps the backend's pool busy


def hash_stored_images(cfg: RunConfig, items: list[Item], ckpt: Checkpoint | None
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 of every item's image in an object store: ({item id: sha256}, {item id: problem}).

    Each folder is listed once; an object whose size and version (ETag) the checkpoint has seen, or
    that validation read whole and kept (store/kept.py), is not read again, as long as its copy in
    state_dir/sources is there (the upload reads it)."""
    cache = ckpt.file_hashes() if ckpt else {}
    source_dir = cfg.state_dir / "sources"
    kept = read_kept(source_dir)  # read whole and kept by this catalog's validation: not read again
    shared = read_kept(cfg.state_root / "sources") if cfg.state_dir != cfg.state_root else {}
    cache.update(shared)  # a shard's: validation, before the shard was chosen, kept them under state.dir
    cache.update(kept)
    by_url: dict[str, str] = {}
    problems: dict[str, str] = {}
    wanted: dict[str, dict[str, None]] = {}   # folder URL -> names in it, in manifest order
    for item in items:
        folder, _, name = item.image_url.rpartition("/")
        wanted.setdefault(folder, {})[name] = None
    fresh: list[tuple[str, int, int, str]] = []
    unknown: dict[str, str] = {}       # url -> why it has no hash
    for folder, names in wanted.items():
        try:
            store = Remote.open(folder, cfg.storage.options, cfg.retries)
            listed = store.children()
        except StorageError as exc:
            unknown.update((f"{folder}/{name}", str(exc)) for name in names)
            continue
        todo = []
        for name in names:
            url = f"{folder}/{name}"
            if name not in listed:
                unknown[url] = f"not found ({url})"
                continue
            size, token = listed[name]
            known = cache.get(url)
            if known and known[0] == size and known[1] == token and url in shared and url not in kept \
                    and not (source_dir / known[2]).exists():
                _link(cfg.state_root / "sources" / known[2], source_dir / known[2])
            if known and known[0] == size and known[1] == token and (source_dir / known[2]).exists():
                by_url[url] = known[2]
                if url in kept or url in shared:
                    fresh.append((url, size, token, known[2]))
            else:
                todo.append((name, size, token))
        for start in range(0, len(todo), STORED_BATCH):
            batch = todo[start:start + STORED_BATCH]
            got = store.read_many([name for name, _, _ in batch])
            for name, size, token in batch:
                url, data = f"{folder}/{name}", got[name]
                if isinstance(data, BaseException):
                    unknown[url] = describe(data, url)
                    continue
                sha = hashlib.sha256(data).hexdigest()
                target = source_dir / sha
                if not target.exists():
                    write_atomically(target, data)
                by_url[url] = sha
                fresh.append((url, size, token, sha))
    if ckpt and fresh:
        ckpt.save_file_hashes(fresh)
    if ckpt and kept:
        drop_kept(source_dir)  # the stat cache has them now
    shas = {}
    for item in items:
        if item.image_url in by_url:
            shas[item.id] = by_url[item.image_url]
        else:
            problems[item.id] = f"cannot read image {item.image_url}: {unknown.get(item.image_url, 'unknown')}"
    return shas, problems


def _link(kept: Path, target: Path) -> None:
    """A copy validation kept under state.dir, made the shard's own: a hard link, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(kept, target)
    except FileExistsError:
        pass
    except OSError:
        try:
            write_atomically(target, kept.read_bytes())
        except OSError:
            pass  # not there after all: the object is read from the bucket
