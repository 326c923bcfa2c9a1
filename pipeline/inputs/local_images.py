"""Local source images checked before anything is sent: missing, unreadable, not images, cut short."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.inputs.files import display_path
from pipeline.media.formats import PNG_END
from pipeline.media.images import HEAD_BYTES, header_of
from pipeline.store.atomic import READ_FLAGS


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an input image, or None if its header reads as an image.

    A plain JPEG, PNG, GIF or WebP header is read by `image_header` (10x faster than Pillow's
    open, which parses every JPEG table); anything else, and every problem, goes through Pillow
    for its verdict and wording. A file's end is read too (see `ends_whole`, `end_problem`)."""
    header, whole = _head_and_tail(path)
    if header is not None:
        return None if whole else end_problem(path, header[0])  # no end where it belongs: decoded to be sure
    try:
        with Image.open(path) as im:
            return end_problem(path, im.format) if im.format in ENDS else None
    except FileNotFoundError:
        return f"not found ({display_path(path)})"
    except IsADirectoryError:
        return f"is a directory ({display_path(path)})"
    except PermissionError:
        return f"cannot be read: permission denied ({display_path(path)})"
    except UnidentifiedImageError:
        return f"is not an image Pillow can read ({display_path(path)})"
    except Image.DecompressionBombError as exc:
        return f"is too large to process: {exc}"
    except Exception as exc:  # the per-item boundary: any decoder fault fails this image only
        return f"cannot be read as an image: {exc}"


JPEG_EOI = b"\xff\xd9"
GIF_TRAILER = b";"
# How a whole file of these formats ends, and how a missing end is worded. A file cut short usually
# opens (its header is whole) and fails only when its pixels are read; its end says it is whole.
ENDS = {"JPEG": "no JPEG end-of-image marker", "PNG": "no PNG end chunk (IEND)", "GIF": "no GIF trailer",
        "WEBP": "shorter than its RIFF header says"}
_TAIL_BYTES = 64


def ends_whole(fmt: str | None, head: bytes, tail: bytes, size: int) -> bool:
    """Whether a file of `fmt` (`size` bytes; its first bytes, and bytes that end where it ends: its
    last ones, or all of it) ends as a whole one does."""
    tail = tail[-_TAIL_BYTES:]
    if fmt == "JPEG":
        return tail.rstrip(b"\0").endswith(JPEG_EOI)
    if fmt == "PNG":
        return tail.endswith(PNG_END)
    if fmt == "GIF":
        return tail.rstrip(b"\0").endswith(GIF_TRAILER)
    if fmt == "WEBP":  # RIFF: the size of what follows its first 8 bytes (data after it is allowed)
        return len(head) >= 8 and int.from_bytes(head[4:8], "little") + 8 <= size
    return True


def _read_at(fd: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, _TAIL_BYTES)


def _head_and_tail(path: Path) -> tuple[tuple[str, int, int] | None, bool]:
    """`image_header` of `path`, and whether it ends whole (`ends_whole`), from one open (six system
    calls; a header and then the end marker read by `open` each took fifteen). (None, False) when it
    cannot be read."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return None, False
    try:
        head = os.read(fd, HEAD_BYTES)
        header = header_of(head)
        if header is None or header[0] not in ENDS:
            return header, True
        size = os.fstat(fd).st_size
        tail = head[-_TAIL_BYTES:] if size <= len(head) else _read_at(fd, size - _TAIL_BYTES)
        return header, ends_whole(header[0], head, tail, size)
    except OSError:  # a directory, or the file went away: Pillow words it below
        return None, False
    finally:
        os.close(fd)


def end_problem(path: Path, fmt: str) -> str | None:
    """Why a JPEG, PNG, GIF or WebP is cut short, or None: it ends as a whole one does, or decodes
    without that (Pillow reads a GIF's first frame, the one a run sends).

    Only the last bytes are read in the common case; a file without its end at its end (cut short,
    or with data after it, as some cameras write) is decoded to be sure, as a run would do.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL_BYTES))
            if ends_whole(fmt, head, fh.read(), size):
                return None
            fh.seek(0)
            with Image.open(fh, formats=[fmt]) as im:
                im.load()
    except UnidentifiedImageError:  # cut inside its header: Pillow's message names only the file object
        return f"is truncated: {ENDS[fmt]}, and it does not decode"
    except OSError as exc:  # Pillow's "image file is truncated", or the file went away
        return f"is truncated: {ENDS[fmt]}, and it does not decode ({_one_line(exc)})"
    except Exception as exc:  # the per-item boundary, as in image_problem
        return f"cannot be read as an image: {exc}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
