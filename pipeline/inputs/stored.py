"""Images in an object store, checked before anything is spent as local ones are (manifest.check_images).

    problems, sizes = check_stored_images(manifest.items, cfg.storage.options)

Each folder is listed once (existence and size of every image in it); then the first bytes of every
image are read with ranged GETs, concurrently by the backend, and so are a JPEG's last bytes, for
its end-of-image marker. Only an image those bytes cannot vouch for (a format the quick header
reader does not know, a JPEG without its end marker) is read whole and decoded.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError

from pipeline.media.images import HEAD_BYTES, header_of
from pipeline.store.remote import Remote, StorageError, describe, is_remote

TAIL_BYTES = 64
JPEG_EOI = b"\xff\xd9"
# Product photos put their frame header within the first kilobytes; an EXIF block that pushes it
# further costs one more read of HEAD_BYTES.
FIRST_BYTES = 16 * 1024


def check_stored_images(items: Iterable, options: Mapping[str, Any] | None = None
                        ) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """({item id: one-line problem}, {url: (width, height)}) for items whose image is a storage URL."""
    by_folder: dict[str, dict[str, list[str]]] = {}  # folder URL -> object name -> item ids
    images: dict[str, str] = {}
    for item in items:
        url = item.image_url
        if url is None or not is_remote(url):
            continue
        folder, _, name = url.rpartition("/")
        by_folder.setdefault(folder, {}).setdefault(name, []).append(item.id)
        images[item.id] = item.image
    verdicts: dict[str, str | None] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for folder, names in by_folder.items():
        verdicts.update(_check_folder(folder, list(names), options, sizes))
    problems = {}
    for folder, names in by_folder.items():
        for name, ids in names.items():
            if (problem := verdicts.get(f"{folder}/{name}")) is not None:
                problems.update((item_id, f"image {images[item_id]!r} {problem}") for item_id in ids)
    return problems, sizes


def _check_folder(folder: str, names: list[str], options: Mapping[str, Any] | None,
                  sizes: dict[str, tuple[int, int]]) -> dict[str, str | None]:
    try:
        store = Remote.open(folder, options)
        listed = store.children()
    except StorageError as exc:
        return {f"{folder}/{name}": f"cannot be read: {exc}" for name in names}
    verdicts: dict[str, str | None] = {}
    present = []
    for name in names:
        url = f"{folder}/{name}"
        if name not in listed:
            verdicts[url] = f"not found ({url})"
        elif listed[name][0] == 0:
            verdicts[url] = f"is empty: 0 bytes ({url})"
        else:
            present.append(name)
    heads = _ranges(store, [(name, 0, min(FIRST_BYTES, listed[name][0])) for name in present])
    longer = [n for n in present if not isinstance(heads[n], BaseException) and header_of(heads[n]) is None
              and listed[n][0] > FIRST_BYTES]
    heads.update(_ranges(store, [(name, 0, min(HEAD_BYTES, listed[name][0])) for name in longer]))
    whole, tails = [], []
    for name in present:
        url, head = f"{folder}/{name}", heads[name]
        if isinstance(head, BaseException):
            verdicts[url] = f"cannot be read: {describe(head, url)}"
            continue
        header = header_of(head)
        if header is None:
            whole.append(name)
            continue
        sizes[url] = (header[1], header[2])
        if header[0] == "JPEG":
            tails.append(name)
        else:
            verdicts[url] = None
    size = {name: listed[name][0] for name in present}
    got = _ranges(store, [(name, max(0, size[name] - TAIL_BYTES), size[name]) for name in tails])
    for name in tails:
        tail = got[name]
        if isinstance(tail, BaseException) or not tail.rstrip(b"\0").endswith(JPEG_EOI):
            whole.append(name)
        else:
            verdicts[f"{folder}/{name}"] = None
    for name, data in store.read_many(whole).items():
        url = f"{folder}/{name}"
        verdicts[url] = f"cannot be read: {describe(data, url)}" if isinstance(data, BaseException) \
            else _decoded_problem(data, url, sizes)
    return verdicts


def _ranges(store: Remote, wanted: list[tuple[str, int, int]]) -> dict[str, bytes | BaseException]:
    """Byte ranges of several objects at once: {name: bytes, or the fault}."""
    if not wanted:
        return {}
    paths = [store.path(name) for name, _, _ in wanted]
    try:
        got = store.fs.cat_ranges(paths, [s for _, s, _ in wanted], [e for _, _, e in wanted], on_error="return")
    except Exception as exc:  # noqa: BLE001 - a backend fault on the whole batch: each image says so
        got = [exc] * len(wanted)
    return {name: data for (name, _, _), data in zip(wanted, got)}


def _decoded_problem(data: bytes, url: str, sizes: dict[str, tuple[int, int]]) -> str | None:
    """Pillow's verdict on a whole image, worded as manifest.image_problem words a local file's."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            sizes[url] = im.size
            if im.format == "JPEG" and not data.rstrip(b"\0").endswith(JPEG_EOI):
                im.load()
    except UnidentifiedImageError:
        return f"is not an image Pillow can read ({url})"
    except Image.DecompressionBombError as exc:
        return f"is too large to process: {exc}"
    except OSError as exc:
        return f"is truncated: no JPEG end-of-image marker, and it does not decode ({' '.join(str(exc).split())})"
    except Exception as exc:  # noqa: BLE001 - the per-item boundary: any decoder fault fails this image only
        return f"cannot be read as an image: {exc}"
    return None
