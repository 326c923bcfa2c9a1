"""Prepare an image for LightX's upload: JPEG or PNG, upright, within the size cap.

    >>> prepared = prepare_image(Path("shoe.webp").read_bytes())
    >>> prepared.content_type, prepared.changed
    ('image/jpeg', True)
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageMath, ImageOps

from pipeline.media.formats import PNG_END, sniff_format
from pipeline.store.atomic import read_file

MAX_UPLOAD_BYTES = 5_242_880
JPEG_QUALITY = 92
# Steps tried on a full-size image that is over the cap, before any pixels are given up.
QUALITY_LADDER = (90, 85, 80, 75, 70, 65, 60)
# Once we must downscale, keep the remaining pixels clean rather than also crushing them at q60.
DOWNSCALE_QUALITY = 85
DOWNSCALE_FACTOR = 0.85
MIN_SIDE = 16  # below this, downscaling stops and the image is refused

_ORIENTATION = 0x0112
_HEAD_BYTES = 1 << 16  # a JPEG's frame header follows its EXIF, which is at most 64 KiB
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_GREY_MODES = {"1", "L", "LA", "La", "I", "F"}
# Pillow's own decode errors; ImageError is a ValueError, so it is re-raised before these are caught.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class ImageError(ValueError):
    """The bytes are not an image we can read; the message is one human line."""


@dataclass(frozen=True)
class PreparedImage:
    """Bytes ready for the upload slot; ``content_type`` always matches ``data``."""

    data: bytes
    content_type: str
    width: int
    height: int
    changed: bool


def prepare_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> PreparedImage:
    """Return ``data`` unchanged if LightX can take it as is, else a converted copy that fits."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError("not an image (unrecognised bytes)")
    try:
        # formats= keeps Pillow from guessing at header-less formats (TGA and friends).
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as im:
            _check_pixels(im)
            if len(data) <= max_bytes and _sendable_as_is(im, fmt, data):
                width, height = im.size
                return PreparedImage(data, f"image/{fmt}", width, height, changed=False)
            im.load()
            upright = ImageOps.exif_transpose(im)
            icc = im.info.get("icc_profile")
        flat = _normalise_mode(upright, icc)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("image too large to decode safely (decompression bomb guard)") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"unreadable {fmt} image ({_one_line(exc)})") from exc
    return _encode_to_fit(flat, _matching_profile(flat, icc), max_bytes)


def image_header(src: str | Path) -> tuple[str, int, int] | None:
    """(format, width, height) of a JPEG, PNG, GIF or WebP any browser shows, from its first bytes.

    None for anything else: another format, a JPEG in CMYK or a coding browsers lack, a bad header.
    About 10x faster than Image.open, which parses every JPEG table first.
    """
    try:
        head = read_file(src, _HEAD_BYTES)
    except OSError:
        return None
    return header_of(head)


HEAD_BYTES = _HEAD_BYTES  # what header_of needs of a file's start (a ranged read of an object)
PIL_FORMATS = _PIL_FORMATS  # sniff_format's name -> Pillow's


def header_of(head: bytes) -> tuple[str, int, int] | None:
    """`image_header` of a file's first HEAD_BYTES bytes."""
    fmt = sniff_format(head)
    if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":  # a file cut in its header: no size
        width, height = struct.unpack(">II", head[16:24])
        return ("PNG", width, height) if width and height else None
    if fmt == "gif" and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return ("GIF", width, height) if width and height else None
    if fmt == "webp" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            width, height = (v & 0x3FFF for v in struct.unpack("<HH", head[26:30]))
        elif chunk == b"VP8L" and head[20] == 0x2F:
            bits = int.from_bytes(head[21:25], "little")
            width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif chunk == b"VP8X":
            width, height = int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
        else:
            return None
        return ("WEBP", width, height) if width and height else None
    if fmt == "jpeg":
        at = 2
        while at + 10 <= len(head) and head[at] == 0xFF:
            marker = head[at + 1]
            if marker == 0xFF:  # fill byte
                at += 1
            elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended or progressive: every browser's
                height, width = struct.unpack(">HH", head[at + 5:at + 9])
                return ("JPEG", width, height) if width and height and head[at + 9] in (1, 3) else None
            elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return None  # lossless or arithmetic coding
            else:
                at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def _check_pixels(im: Image.Image) -> None:
    # Pillow only raises past 2x the limit and warns below it; refuse at the limit itself.
    # Reading the limit per call keeps it adjustable without touching warnings filters.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        raise ImageError(f"image too large to decode safely ({im.width}x{im.height} pixels)")


def _sendable_as_is(im: Image.Image, fmt: str, data: bytes) -> bool:
    """Whether the original bytes are a plain JPEG/PNG that needs no rework (header checks only)."""
    if fmt not in ("jpeg", "png") or im.mode not in ("RGB", "L") or getattr(im, "is_animated", False):
        return False
    if fmt == "jpeg":
        # No EOI marker usually means truncation; the slow path decodes and finds out.
        if im.info.get("progressive") or not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return False
        return im.getexif().get(_ORIENTATION, 1) in (0, 1)  # JPEG EXIF is parsed at open, no decode
    bit_depth, interlace = data[24], data[28]  # PNG IHDR fields; 16-bit RGB opens as mode RGB
    if bit_depth != 8 or interlace or "transparency" in im.info or not data.endswith(PNG_END):
        return False
    # Only an eXIf chunk before IDAT is visible without decoding; that is where writers put it.
    exif = im.info.get("exif")
    return not exif or _exif_orientation(exif) in (0, 1)


def _exif_orientation(raw: bytes) -> int:
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(_ORIENTATION, 1)


def _normalise_mode(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Return an 8-bit RGB, L or (only when some pixel is see-through) RGBA image."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit_grey(im)
    if "transparency" in im.info or im.mode in _ALPHA_MODES or _rgba_palette(im):
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            return rgba
        im = rgba.convert("RGB") if im.mode not in _GREY_MODES else rgba.convert("L")
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im, icc)
    if im.mode in ("RGB", "L"):
        return im
    return im.convert("L" if im.mode in _GREY_MODES else "RGB")


def _rgba_palette(im: Image.Image) -> bool:
    return im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"


def _to_8bit_grey(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float grey to L (LA when a tRNS grey value marks transparency)."""
    wide = im.convert("F") if im.mode == "F" else im.convert("I")
    high = wide.getextrema()[1]
    # Pillow's I;16 -> L conversion clips at 255 instead of scaling, turning most of the image white.
    if wide.mode == "I" and 255 < high <= 65535:
        scale = 1 / 257  # 16-bit samples: 65535 -> 255
    elif wide.mode == "F" and 0 < high <= 1.0:
        scale = 255.0  # float samples in 0..1
    else:
        scale = 255 / high if high > 255 else 1.0
    grey = wide.point(lambda v: v * scale).convert("L")
    # The key is in 16-bit units; left on the 8-bit image it would hide the wrong pixels.
    key = grey.info.pop("transparency", None)
    if isinstance(key, int) and wide.mode == "I":
        opaque = ImageMath.lambda_eval(lambda a: a["im"] != key, im=wide)
        grey.putalpha(opaque.convert("L").point(lambda v: 255 if v else 0))
    return grey


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    # The embedded press profile gives the real colours; Pillow's plain formula is the fallback.
    if icc and icc[16:20] == b"CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass
    return im.convert("RGB")


def _matching_profile(im: Image.Image, icc: bytes | None) -> bytes | None:
    """Keep the source ICC profile only when it still describes the output's colour space."""
    if not icc:
        return None
    space = icc[16:20]
    if (im.mode in ("RGB", "RGBA") and space == b"RGB ") or (im.mode == "L" and space == b"GRAY"):
        return icc
    return None


def _encode_to_fit(im: Image.Image, icc: bytes | None, max_bytes: int) -> PreparedImage:
    """Encode as JPEG (PNG when transparent), stepping quality then size down until it fits."""
    transparent = im.mode == "RGBA"
    attempts = _png_attempts() if transparent else _jpeg_attempts()
    for scale, options in attempts:
        sized = im if scale == 1 else _downscale(im, scale)
        data = _save(sized, "PNG" if transparent else "JPEG", options, icc)
        if len(data) <= max_bytes:
            content_type = "image/png" if transparent else "image/jpeg"
            return PreparedImage(data, content_type, sized.width, sized.height, changed=True)
        if scale < 1 and min(sized.size) <= MIN_SIDE:
            break
    raise ImageError(f"cannot shrink image below {max_bytes} bytes")


def _jpeg_attempts():
    yield 1.0, {"quality": JPEG_QUALITY}
    for quality in QUALITY_LADDER:
        yield 1.0, {"quality": quality}
    yield from _downscales({"quality": DOWNSCALE_QUALITY})


def _png_attempts():
    yield 1.0, {}
    yield 1.0, {"optimize": True}
    yield from _downscales({"optimize": True})


def _downscales(options: dict):
    scale = 1.0
    while True:
        scale *= DOWNSCALE_FACTOR
        yield scale, options


def _downscale(im: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)  # Pillow premultiplies alpha for RGBA


def _save(im: Image.Image, fmt: str, options: dict, icc: bytes | None) -> bytes:
    buffer = io.BytesIO()
    # No EXIF is written: the pixels are upright now, and camera/GPS data need not leave the machine.
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        extra.update(optimize=True, progressive=False)
    im.save(buffer, fmt, **options, **extra)
    return buffer.getvalue()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
