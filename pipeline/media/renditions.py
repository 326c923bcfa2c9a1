"""One rendition of a delivered picture: sized, sRGB, encoded, with the same disclosure XMP.

    data = render(jpeg_bytes, Rendition("square", "webp", size=1024, fit="pad"), disclosure)
    make(Task(source="out/sku-1.jpg", target="out/square/sku-1.webp", ...))   # in a worker process

JPEG and PNG get the packet by the same segment/chunk surgery as the delivered picture; WebP gets it
from Pillow's `xmp=` (an `XMP ` chunk, the VP8X flag set). Every rendition is tagged with the sRGB
profile: a picture in another profile is converted to sRGB first.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageCms, ImageColor, ImageOps

from pipeline.errors import OutputError
from pipeline.inputs.delivery import Rendition
from pipeline.media.xmp import Disclosure, XmpError, disclose, packet
from pipeline.store.atomic import write_atomically

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_LANCZOS = Image.Resampling.LANCZOS


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    return _srgb().tobytes()


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB or RGBA in sRGB: an embedded profile that is not sRGB is converted from."""
    alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" not in ImageCms.getProfileDescription(source).lower():
                if img.mode not in ("RGB", "RGBA", "CMYK"):
                    img = img.convert("RGBA" if alpha else "RGB")
                return ImageCms.profileToProfile(img, source, _srgb(), outputMode="RGBA" if alpha else "RGB")
        except (OSError, ImageCms.PyCMSError):
            pass  # an unreadable profile: take the values as sRGB, as browsers do
    return img.convert("RGBA" if alpha else "RGB")


def _shaped(img: Image.Image, r: Rendition) -> Image.Image:
    if r.max_side:
        if max(img.size) <= r.max_side:
            return img
        return ImageOps.contain(img, (r.max_side, r.max_side), _LANCZOS)
    side = r.size
    if r.fit == "cover":
        return ImageOps.fit(img, (side, side), _LANCZOS)
    fitted = ImageOps.contain(img, (side, side), _LANCZOS)
    transparent = r.background.lower() == "transparent"
    colour = (0, 0, 0, 0) if transparent else ImageColor.getrgb(r.background)
    canvas = Image.new("RGBA" if transparent or fitted.mode == "RGBA" else "RGB", (side, side), colour)
    canvas.paste(fitted, ((side - fitted.width) // 2, (side - fitted.height) // 2),
                 fitted if fitted.mode == "RGBA" else None)
    return canvas


def _needed(size: tuple[int, int], r: Rendition) -> tuple[int, int]:
    """The smallest decoded size the rendition is made from without losing detail."""
    w, h = size
    side = r.max_side or r.size
    scale = side / (min(w, h) if r.size and r.fit == "cover" else max(w, h))
    return (w, h) if scale >= 1 else (math.ceil(w * scale), math.ceil(h * scale))


def render(data: bytes, r: Rendition, disclosure: Disclosure | None) -> bytes:
    """The rendition's bytes; raises OSError/ValueError for a picture that does not decode."""
    with Image.open(io.BytesIO(data)) as opened:
        if opened.format == "JPEG":  # let libjpeg decode at 1/2, 1/4 or 1/8 scale where that is enough
            opened.draft(opened.mode, _needed(opened.size, r))
        opened.load()
        img = _to_srgb(opened, opened.info.get("icc_profile"))
    img = _shaped(img, r)
    if r.format == "jpeg" and img.mode == "RGBA":  # no alpha in a JPEG: onto the background
        flat = Image.new("RGB", img.size, ImageColor.getrgb(r.background if r.background.lower() != "transparent"
                                                            else "#FFFFFF"))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    out = io.BytesIO()
    options: dict = {"icc_profile": srgb_icc()}
    if r.format in ("jpeg", "webp"):
        options["quality"] = r.quality
    if r.format == "webp" and disclosure is not None:
        options["xmp"] = packet(disclosure)
    img.save(out, _PIL_FORMAT[r.format], **options)
    encoded = out.getvalue()
    return encoded if r.format == "webp" else disclose(encoded, disclosure)


@dataclass(frozen=True)
class Task:
    """One rendition to make, in a worker process: from a local file or bytes, to a local file or bytes back."""

    rendition: Rendition
    disclosure: Disclosure | None
    source: str | None = None      # a local path; else `data`
    data: bytes | None = None
    target: str | None = None      # a local path; else the bytes are returned


def make(task: Task) -> tuple[int, int | None, bytes | None] | str:
    """(size, mtime_ns, bytes when there is no local target), or why it could not be made."""
    try:
        if task.source is not None:
            with open(task.source, "rb") as fh:
                data = fh.read()
        else:
            data = task.data
        encoded = render(data, task.rendition, task.disclosure)
        if task.target is None:
            return len(encoded), None, encoded
        st = write_atomically(Path(task.target), encoded)
        return st.st_size, st.st_mtime_ns, None
    except (OSError, ValueError, XmpError, OutputError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
