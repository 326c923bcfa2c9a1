"""Previews for the report: small images shown as themselves, others as ~256 px JPEG thumbnails.

    previews = Previews(cfg.output.dir)              # what thumbs/ holds already
    key = previews.key("in", sha256, src)            # an image's preview name
    img_src = previews.show(key, src, href, on_made)  # its <img src> now, or None and on_made later
    previews.finish()                                # make what is missing, drop what is unused

An output's preview is made at its download instead, from the decode that checks it
(`draft_for_preview`, `preview_of`, `keep_output_preview`), and a source's at its upload, from the
bytes read for it: the report finds them made.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from PIL import Image

from pipeline.errors import OutputError
from pipeline.store.atomic import write_atomically
from pipeline.media.images import header_of, image_header

THUMB_SIZE = 256
THUMB_QUALITY = 82
THUMBS = "thumbs"
# Formats every current browser shows; a small file in one of them needs no thumbnail.
BROWSER_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# Up to this side and file size, a browser image is shown as itself too, scaled by CSS: its frame is
# 150-256 CSS px, so 300-500 device px on HiDPI screens. A thumbnail would save the page little and
# costs 2-3 ms of CPU per 640 px JPEG (mostly Huffman decoding, which draft mode cannot skip) and
# 10 ms per photo PNG.
AS_IS_SIDE = 640
AS_IS_BYTES = 200_000
# Thumbnails of bigger images go to threads: Pillow releases the GIL while it decodes and resizes,
# and at 300x300 px two threads took 1.4-2x less wall time for about the same CPU. For small images
# the GIL-bound Python around each dominates: at 64x64 px threads cost 30% more CPU, saved no time.
BIG_PIXELS = 300 * 300
# JPEGs are draft-decoded to under 2x the preview; others are box-reduced by an integer factor
# while over 2x is left (reducing_gap). Bilinear does the rest, 44-46 dB PSNR from Lanczos on the
# full image, for under half its CPU: 2.8 ms, not 6.2 ms, from 640 px; 8 ms, not 80 ms, from 2400 px.
# A gap of 1 would save 1 ms more at 640 px, but shows moiré on fine patterns such as fabric.
_RESAMPLE = Image.Resampling.BILINEAR
_REDUCING_GAP = 2.0
_RESIZABLE = {"L", "LA", "RGB", "RGBA", "CMYK"}  # others resize nearest-neighbour, or not at all
_WIDE_GREY = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,  # by EXIF orientation
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_ORIENTATION = 0x0112
_DIRECT = ".direct"
_PREVIEW_KEY = re.compile(r"[0-9a-f]{24}-(?:in|out)")
PREVIEW_NAME = re.compile(r"([0-9a-f]{24}-(?:in|out))\.(jpg|png|webp|gif)")
_EXTS = {ext: ext for ext in BROWSER_FORMATS.values()}  # one str each, shared by every preview's entry


def thumbnail(src: Path | str, dest: Path, size: int = THUMB_SIZE) -> bool:
    """Write an upright RGB JPEG of `src` within size x size to `dest`; False if `src` is unreadable.

    An unwritable `dest` raises OutputError: that is a broken output.dir, not a bad image.
    """
    try:
        with Image.open(src) as original:
            _draft(original, size)
            data = _encoded(original, size)
    except Exception:  # noqa: BLE001 - per-item boundary: a bad image becomes a placeholder, not a failed report
        return False
    write_atomically(dest, data)
    return True


def _draft(im: Image.Image, size: int) -> None:
    """A JPEG decodes at 1/2..1/8 scale, never below the preview's own size: the box of `size` px
    fitted to the picture, not the square. A 1024x768 JPEG decodes at 1/4, not 1/2: 0.5 ms of CPU,
    not 2.0 ms, and 48 dB PSNR from Lanczos on the full picture, not 44 dB (libjpeg's scaled IDCT
    does better than bilinear after a 1/2 decode)."""
    width, height = im.size
    scale = size / max(width, height, 1)
    im.draft("RGB", (max(1, math.floor(width * scale)), max(1, math.floor(height * scale))))


def _encoded(original: Image.Image, size: int) -> bytes:
    """The preview JPEG of an opened image (drafted, or loaded at the draft's scale already)."""
    upright = _UPRIGHT.get(original.getexif().get(_ORIENTATION))
    im = _resizable(original)
    im.thumbnail((size, size), _RESAMPLE, reducing_gap=_REDUCING_GAP)
    if upright is not None:
        im = im.transpose(upright)  # after shrinking: turning 256 px is cheaper
    buffer = io.BytesIO()
    _flat_rgb(im).save(buffer, "JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


# -- an output's preview, made at its download from the decode that checks it --------------------------
# The report's thumbnail of a 1024 px output cost a second decode of every picture at the run's end,
# 1 ms of CPU each (#21 §5): the download decodes the picture anyway, to check it is whole. Decoded at
# the preview's draft scale instead of 1/8, the same pass checks it and gives its preview.

def wants_preview(data: bytes) -> bool:
    """Whether the report shows this picture (a file's bytes) by a thumbnail, not as itself (as
    `Previews` decides from the file: `_plan`)."""
    found = header_of(data)  # it reads the first bytes only: no copy of them
    return found is not None and not _as_is(max(found[1], found[2]), data.__len__)


def draft_for_preview(im: Image.Image) -> None:
    """Before `im.load()`: decode a JPEG at the preview's scale (as `thumbnail` does)."""
    _draft(im, THUMB_SIZE)


def preview_of(im: Image.Image) -> bytes | None:
    """The preview JPEG of an image loaded after `draft_for_preview`; None if it cannot be made (the
    report then makes it from the file, or shows a placeholder)."""
    try:
        return _encoded(im, THUMB_SIZE)
    except Exception:  # noqa: BLE001 - per-item boundary: a preview is never worth an item
        return None


def keep_output_preview(thumbs: Path, sha256: str, preview: bytes | None) -> None:
    """Write an output's preview as thumbs/<key>.jpg, the name `Previews.key("out", sha256, ...)` gives
    it, where the report finds it made. Never an error: without it the report makes its own."""
    if preview is not None:
        with contextlib.suppress(OutputError):
            write_atomically(thumbs / f"{sha256[:24]}-out.jpg", preview)


def _resizable(im: Image.Image) -> Image.Image:
    """`im`, or a copy in a mode that thumbnail() shrinks with its filter."""
    if im.mode in _RESIZABLE:
        return im
    if im.mode in _WIDE_GREY:
        # 16 bits to 8 as a browser shows them: a plain convert clips everything above 255 to white.
        return im.point(lambda value: value / 256).convert("L")
    if im.mode == "1":
        return im.convert("L")
    alpha = im.mode in ("PA", "La", "RGBa") or "transparency" in im.info
    return im.convert("RGBA" if alpha else "RGB")


def _flat_rgb(im: Image.Image) -> Image.Image:
    """`im` as RGB; transparent product shots sit on white, as a shop page would show them."""
    if im.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", im.size, "white")
        flat.paste(im if im.mode == "RGBA" else im.convert("RGBA"), mask=im.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def stat_key(src: str, kind: str) -> str | None:
    """`<hash of path, size, mtime>-<kind>`, or None if `src` is not there."""
    try:
        st = os.stat(src)
    except OSError:
        return None
    path = src if os.path.isabs(src) else os.path.abspath(src)
    key = f"{kind}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{THUMB_SIZE}"
    return f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}-{kind}"


AS_IS = ""  # in Previews.ready: an output shown as itself, not by a preview in thumbs/
OnMade = Callable[[str | None], None]  # told the <img src> of a preview made late, or None


class Previews:
    """The previews in thumbs/, by key: those made before, those to make, those no longer used.

    A rerun costs one dict operation per image: `ready` starts with every preview an earlier run made
    and every output it found small enough to show as itself (listed in thumbs/.direct); each image
    takes its entry out, so what is left at the end is no longer used.
    """

    def __init__(self, out_dir: Path):
        self.dir = out_dir / THUMBS
        try:
            self.dir.mkdir(exist_ok=True)
            with os.scandir(self.dir) as entries:  # a stream: a million previews' names are never a list
                # key -> its file's extension: the path is made when shown (100 MB less at a million)
                self.made = {m[1]: _EXTS[m[2]] for entry in entries if (m := PREVIEW_NAME.fullmatch(entry.name))}
        except OSError as exc:
            raise OutputError(f"cannot write thumbnails in {self.dir}: {exc.strerror or exc}") from None
        try:
            self.as_is = set((self.dir / _DIRECT).read_text("ascii").split())
        except (OSError, ValueError):
            self.as_is = set()
        self.ready: dict[str, str] = {**dict.fromkeys(self.as_is, AS_IS), **self.made}  # AS_IS or an extension
        self.todo: dict[str, tuple[str, str | None, list[OnMade]]] = {}
        self._stat_keys: dict[str, str | None] = {}  # many items may share one input image: stat it once
        self._shown_as_is: set[str] = set()  # keys made this run that are shown as themselves
        self._done: dict[str, str | None] = {}  # keys made this run (make_pending): their <img src>

    def key(self, kind: str, sha256: str | None, src: str) -> str | None:
        """The preview's name for an input ("in") or output ("out"): by the file's SHA-256 when the
        checkpoint knows it, which costs no system call; else by path, size and mtime (None if gone)."""
        if sha256:
            return f"{sha256[:24]}-{kind}"
        if kind != "in":
            return stat_key(src, kind)
        if src not in self._stat_keys:
            self._stat_keys[src] = stat_key(src, kind)
        return self._stat_keys[src]

    def show(self, key: str, src: str, href: str | None, on_made: OnMade) -> str | None:
        """The <img src> for `key` if it exists: a preview made before, or `href` (the output file
        itself) when that is small enough. Else the preview is queued, and finish() makes it and
        calls `on_made` with its <img src>, or None if `src` is no readable image."""
        ext = self.ready.pop(key, None)
        if ext:
            return f"{THUMBS}/{key}.{ext}"
        if href and ext == AS_IS:
            return href
        if key in self.made:  # taken before by an item with the same image
            return f"{THUMBS}/{key}.{self.made[key]}"
        if href and key in self.as_is:
            return href
        if key in self._done:  # made for an earlier page of the report
            if (shown := self._done[key]) is None:
                on_made(None)
            return shown
        if key in self.todo:
            self.todo[key][2].append(on_made)
        else:
            self.todo[key] = (src, href, [on_made])
        return None

    def state(self) -> str:
        """What thumbs/ holds, in one line: its mtime and thumbs/.direct's size and mtime (a report's stamp)."""
        found = []
        for path in (self.dir, self.dir / _DIRECT):
            try:
                st = os.stat(path)
                found.append(f"{st.st_size}:{st.st_mtime_ns}" if path != self.dir else str(st.st_mtime_ns))
            except OSError:
                found.append("-")
        return "/".join(found)

    def finish(self) -> None:
        """Make the missing previews and set them on their cards; forget unused ones."""
        self.make_pending()
        unused = self.ready.keys()
        as_is = (self.as_is - unused - self.made.keys()) | self._shown_as_is
        if as_is != self.as_is:
            write_atomically(self.dir / _DIRECT, "".join(f"{key}\n" for key in sorted(as_is)).encode("ascii"))
        for key in unused & self.made.keys():
            with contextlib.suppress(OSError):  # a stale preview left behind costs only disk space
                (self.dir / f"{key}.{self.made[key]}").unlink()

    def make_pending(self) -> None:
        """Make the previews asked for so far and set them on their cards (a report page, before it is written)."""
        as_is = self._shown_as_is
        big: list[tuple[str, str]] = []
        for key, (src, href, cards) in sorted(self.todo.items()):
            # A key is a file name: one from a damaged checkpoint gets no preview, and no file.
            plan = _plan(src) if _PREVIEW_KEY.fullmatch(key) else None
            if plan == "big":
                big.append((key, src))
                continue
            if plan is None:
                shown = None
            elif plan == "thumbnail":
                shown = f"{THUMBS}/{key}.jpg" if thumbnail(src, self.dir / f"{key}.jpg") else None
            elif href:
                shown = href
                as_is.add(key)
            else:
                shown = f"{THUMBS}/{key}.{plan}" if _link_or_copy(src, self.dir / f"{key}.{plan}") else None
            self._done[key] = shown
            _tell(cards, shown)
        if big:
            with ThreadPoolExecutor(max_workers=min(4, len(big), os.cpu_count() or 2)) as pool:
                made = pool.map(lambda job: thumbnail(job[1], self.dir / f"{job[0]}.jpg"), big)
                for (key, src), ok in zip(big, made):
                    _, href, cards = self.todo[key]
                    self._done[key] = shown = f"{THUMBS}/{key}.jpg" if ok else None
                    _tell(cards, shown)
        self.todo = {}


def _tell(waiting: list[OnMade], shown: str | None) -> None:
    for on_made in waiting:
        on_made(shown)


def _plan(src: str) -> str | None:
    """How to preview `src`: a file extension to show it as itself, "thumbnail", "big" (a thumbnail
    worth a thread), or None if it is not a readable image. Reads the header only."""
    found = image_header(src)
    if found is None:
        try:
            with Image.open(src) as im:
                found = None, *im.size
        except Exception:  # noqa: BLE001 - per-item boundary: a bad image becomes a placeholder
            return None
    fmt, width, height = found
    if fmt is not None and _as_is(max(width, height), lambda: _file_size(src)):
        return BROWSER_FORMATS[fmt]
    return "big" if width * height > BIG_PIXELS else "thumbnail"


def _as_is(side: int, size: Callable[[], float]) -> bool:
    """Whether a browser-format image this big (its long side; its file size, asked only if needed)
    is shown as itself."""
    return side <= THUMB_SIZE or side <= AS_IS_SIDE and size() <= AS_IS_BYTES


def _file_size(src: str) -> float:
    try:
        return os.stat(src).st_size
    except OSError:
        return math.inf


def _link_or_copy(src: str, dest: Path) -> bool:
    """Put a small input into thumbs/: a hard link costs no copy; other filesystems get a copy."""
    try:
        os.link(src, dest)
        return True
    except FileExistsError:
        return True  # same key, so the same image
    except OSError:
        pass
    try:
        data = Path(src).read_bytes()
    except OSError:
        return False
    write_atomically(dest, data)
    return True
