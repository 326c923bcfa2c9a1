"""Images in an object store, checked before anything is spent as local ones are (manifest.check_images).

    problems, sizes = check_stored_images(manifest.items, cfg.storage.options, seen)

Each folder is listed once: existence and size of every image in it. Then one ranged GET per image,
concurrently by the backend: the first 16 KiB, where a product photo's frame header is (an image of
up to 64 KiB is read whole, so its end is checked too (local_images.ends_whole); a bigger one's end is
checked when the run prepares it for upload, before any order). Only an image those bytes cannot
vouch for (a format the quick header reader does not know) is read whole and decoded by Pillow.

`seen`: the stat cache of earlier runs ({url: (size, version, sha256)}, store.checkpoint): an image
a run already read, unchanged since (same size and ETag), is not read again. A nightly run of an
unchanged catalog costs its listings alone.

`keep` (`<state.dir>/sources`, as `validate` passes it): every new image is read whole instead, in
one GET, and judged from those bytes; a good one is hashed and its copy kept under its sha256
(store/kept.py records it), so the run's hashing and upload read it 0 more times. A new image is
read once in all.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError

from pathlib import Path

from pipeline.inputs.local_images import ENDS, ends_whole
from pipeline.media.formats import sniff_format
from pipeline.media.images import HEAD_BYTES, PIL_FORMATS, header_of, image_header
from pipeline.store.atomic import write_atomically
from pipeline.store.kept import add_kept, read_kept
from pipeline.store.remote import Remote, StorageError, describe, is_remote

FIRST_BYTES = 16 * 1024  # an EXIF block that pushes the frame header further costs one more read
WHOLE_BYTES = 64 * 1024  # up to this size an image is read whole: one request either way
WHOLE_BATCH = 64


def check_stored_images(items: Iterable, options: Mapping[str, Any] | None = None,
                        seen: Mapping[str, tuple[int, int, str]] | None = None, *, sizes_needed: bool = False,
                        keep: Path | None = None, retries: Any = None,
                        ) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """({item id: one-line problem}, {url: (width, height)}) for items whose image is a storage URL.
    `sizes_needed`: read the header of a seen image too, for its size (variants check limits with it).
    `keep`: read new images whole and keep their copies there (see the module's docstring);
    `retries`: the config's retries section, for every call."""
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
    if keep is not None and by_folder:
        seen = {**(seen or {}), **read_kept(keep)}  # an earlier validation's reads
    for folder, names in by_folder.items():
        verdicts.update(_check_folder(folder, list(names), options, sizes, seen or {}, sizes_needed, keep, retries))
    problems = {}
    for folder, names in by_folder.items():
        for name, ids in names.items():
            if (problem := verdicts.get(f"{folder}/{name}")) is not None:
                problems.update((item_id, f"image {images[item_id]!r} {problem}") for item_id in ids)
    return problems, sizes


def _check_folder(folder: str, names: list[str], options: Mapping[str, Any] | None,
                  sizes: dict[str, tuple[int, int]], seen: Mapping[str, tuple[int, int, str]],
                  sizes_needed: bool = False, keep: Path | None = None, retries: Any = None
                  ) -> dict[str, str | None]:
    try:
        store = Remote.open(folder, options, retries)
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
        elif (known := seen.get(url)) and known[:2] == listed[name] and \
                (not sizes_needed or _size_of_copy(keep, known[2], url, sizes)):
            verdicts[url] = None  # read whole by an earlier run, and unchanged since
        else:
            present.append(name)
    if keep is not None:
        _read_whole(store, folder, present, listed, keep, verdicts, sizes)
        return verdicts
    size = {name: listed[name][0] for name in present}
    heads = _ranges(store, [(name, 0, size[name] if size[name] <= WHOLE_BYTES else FIRST_BYTES)
                            for name in present])
    longer = [n for n in present if not isinstance(heads[n], BaseException) and header_of(heads[n]) is None
              and size[n] > WHOLE_BYTES]
    heads.update(_ranges(store, [(name, 0, min(HEAD_BYTES, size[name])) for name in longer]))
    whole = []
    for name in present:
        url, head = f"{folder}/{name}", heads[name]
        if isinstance(head, BaseException):
            verdicts[url] = f"cannot be read: {describe(head, url)}"
            continue
        header = header_of(head)
        if header is None or len(head) == size[name] and not ends_whole(header[0], head, head, size[name]):
            whole.append(name)  # Pillow decides, and words the problem
            continue
        sizes[url] = (header[1], header[2])
        verdicts[url] = None
    for start in range(0, len(whole), WHOLE_BATCH):  # whole images in memory a batch at a time
        for name, data in store.read_many(whole[start:start + WHOLE_BATCH]).items():
            url = f"{folder}/{name}"
            verdicts[url] = f"cannot be read: {describe(data, url)}" if isinstance(data, BaseException) \
                else _decoded_problem(data, url, sizes)
    return verdicts


def _size_of_copy(keep: Path | None, sha: str, url: str, sizes: dict[str, tuple[int, int]]) -> bool:
    """The size of a seen image from its copy in `keep`, without a read of the bucket; False if none."""
    header = image_header(keep / sha) if keep is not None else None
    if header is not None:
        sizes[url] = (header[1], header[2])
    return header is not None


def _read_whole(store: Remote, folder: str, names: list[str], listed: Mapping[str, tuple[int, int]], keep: Path,
                verdicts: dict[str, str | None], sizes: dict[str, tuple[int, int]]) -> None:
    """Each image read whole, once, a batch at a time: judged from its bytes, and a good one hashed
    and kept in `keep` under its sha256, recorded for the run (store/kept.py)."""
    for start in range(0, len(names), WHOLE_BATCH):
        kept = []
        for name, data in store.read_many(names[start:start + WHOLE_BATCH]).items():
            url = f"{folder}/{name}"
            if isinstance(data, BaseException):
                verdicts[url] = f"cannot be read: {describe(data, url)}"
                continue
            header = header_of(data[:HEAD_BYTES])
            if header is not None and ends_whole(header[0], data, data, len(data)):
                sizes[url] = (header[1], header[2])
                verdicts[url] = None
            else:
                verdicts[url] = _decoded_problem(data, url, sizes)  # Pillow decides, and words the problem
            if verdicts[url] is None:
                sha = hashlib.sha256(data).hexdigest()
                if not (keep / sha).exists():
                    write_atomically(keep / sha, data)
                kept.append((url, len(data), listed[name][1], sha))
        add_kept(keep, kept)


def _ranges(store: Remote, wanted: list[tuple[str, int, int]]) -> dict[str, bytes | BaseException]:
    """Byte ranges of several objects at once: {name: bytes, or the fault}."""
    if not wanted:
        return {}
    return store.read_ranges(wanted)  # retried on transient faults; a fault on the batch: each image says so


def _decoded_problem(data: bytes, url: str, sizes: dict[str, tuple[int, int]]) -> str | None:
    """Pillow's verdict on a whole image, worded as manifest.image_problem words a local file's."""
    fmt = PIL_FORMATS.get(sniff_format(data[:HEAD_BYTES]))  # by its magic bytes, if Pillow cannot tell
    try:
        with Image.open(io.BytesIO(data)) as im:
            sizes[url] = im.size
            fmt = im.format
            if not ends_whole(im.format, data, data, len(data)):
                im.load()
    except UnidentifiedImageError:
        if fmt in ENDS:  # its magic bytes say what it is, cut before Pillow could tell
            return f"is truncated: {ENDS[fmt]}, and it does not decode"
        return f"is not an image Pillow can read ({url})"
    except Image.DecompressionBombError as exc:
        return f"is too large to process: {exc}"
    except OSError as exc:
        what = f"{ENDS[fmt]}, and it does not decode" if fmt in ENDS else "it does not decode"
        return f"is truncated: {what} ({' '.join(str(exc).split())})"
    except Exception as exc:  # noqa: BLE001 - the per-item boundary: any decoder fault fails this image only
        return f"cannot be read as an image: {exc}"
    return None
