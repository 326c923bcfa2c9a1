"""What each registered LightX tool makes in the sandbox: recognisable stand-ins, not LightX's models.

    out = HANDLERS["upscale"](jpeg_bytes, {"quality": 2}, {})
    out.content_type, out.mask    # ('image/jpeg', None)

A handler takes the input bytes, the order's field values (named as in ``pipeline.lightx.tools``)
and the bytes of its image-valued fields, and returns the output. Outputs are deterministic: the
same input, values and images give the same bytes. Every tool of ``TOOLS`` has one (a test checks).
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageColor, ImageOps, ImageStat

from pipeline.lightx.tools import TOOLS, TRANSPARENT, is_colour
from pipeline.sandbox import painter

JPEG_QUALITY = 90
WORK_SIDE = 1024  # masks are computed at most this large, then scaled to the picture


@dataclass(frozen=True)
class Output:
    data: bytes
    content_type: str = "image/jpeg"
    mask: bytes | None = None  # a PNG, for tools whose answer carries one


Handler = Callable[[bytes, Mapping[str, Any], Mapping[str, bytes]], Output]


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return ImageOps.exif_transpose(opened).convert("RGBA")


def _encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buffer, fmt)
    return buffer.getvalue()


def _mask(img: Image.Image) -> Image.Image:
    """The product's mask at the picture's size (painter's cut-out, computed on a smaller copy)."""
    scale = min(1.0, WORK_SIDE / max(img.size))
    work = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.Resampling.LANCZOS) if scale < 1 else img
    mask = painter.product_mask(work)
    return mask.resize(img.size, Image.Resampling.BILINEAR) if mask.size != img.size else mask


def _backdrop(size: tuple[int, int], value: Any, images: Mapping[str, bytes], name: str) -> Image.Image:
    if is_colour(value):
        return Image.new("RGB", size, ImageColor.getrgb(value))
    return ImageOps.fit(_open(images[name]).convert("RGB"), size, Image.Resampling.LANCZOS)


def background_generator(image: bytes, values: Mapping[str, Any], images: Mapping[str, bytes]) -> Output:
    return Output(painter.render(image, values["prompt"]))


def remove_background(image: bytes, values: Mapping[str, Any], images: Mapping[str, bytes]) -> Output:
    """The cut-out on the given colour or picture; ``transparent`` (the default) gives an RGBA PNG."""
    img = _open(image)
    mask = _mask(img)
    background = values.get("background") or TRANSPARENT
    if background.lower() == TRANSPARENT:
        img.putalpha(mask)
        data, content_type = _encode(img, "PNG"), "image/png"
    else:
        data = _encode(Image.composite(img.convert("RGB"), _backdrop(img.size, background, images, "background"),
                                       mask))
        content_type = "image/jpeg"
    return Output(data, content_type, mask=_encode(mask, "PNG"))


def upscale(image: bytes, values: Mapping[str, Any], images: Mapping[str, bytes]) -> Output:
    img = _open(image)
    factor = int(values["quality"])
    return Output(_encode(img.resize((img.width * factor, img.height * factor), Image.Resampling.LANCZOS)))


def _palette(img: Image.Image, colours: int = 3) -> list[tuple[int, int, int]]:
    """The picture's main colours, most common first."""
    small = img.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR).quantize(colours)
    palette = small.getpalette() or []
    counts = sorted(small.getcolors() or [], reverse=True)
    return [tuple(palette[3 * index:3 * index + 3]) for _, index in counts]  # type: ignore[misc]


def product_photoshoot(image: bytes, values: Mapping[str, Any], images: Mapping[str, bytes]) -> Output:
    """The product on a backdrop graded between the style picture's two main colours (its prompt's
    scene when there is no style picture)."""
    if "style_image" not in images:
        return Output(painter.render(image, values.get("prompt") or "a clean studio backdrop"))
    img = _open(image)
    colours = _palette(_open(images["style_image"])) * 2
    ramp = Image.linear_gradient("L").resize(img.size, Image.Resampling.BILINEAR)
    backdrop = Image.composite(Image.new("RGB", img.size, colours[1]), Image.new("RGB", img.size, colours[0]),
                               ramp)
    return Output(_encode(Image.composite(img.convert("RGB"), backdrop, _mask(img))))


def expand_photo(image: bytes, values: Mapping[str, Any], images: Mapping[str, bytes]) -> Output:
    """The picture on a larger canvas, the padding filled with the colour of its border."""
    img = _open(image).convert("RGB")
    left, right, top, bottom = (int(values.get(f"{side}_padding", 0)) for side in ("left", "right", "top", "bottom"))
    w, h = img.size
    border = Image.new("L", img.size, 255)
    border.paste(0, (1, 1, max(1, w - 1), max(1, h - 1)))
    fill = tuple(ImageStat.Stat(img, border).median)
    canvas = Image.new("RGB", (w + left + right, h + top + bottom), fill)
    canvas.paste(img, (left, top))
    return Output(_encode(canvas))


HANDLERS: dict[str, Handler] = {
    "background-generator": background_generator,
    "product-photoshoot": product_photoshoot,
    "remove-background": remove_background,
    "upscale": upscale,
    "expand-photo": expand_photo,
}

def output_extension(tool: str, values: Mapping[str, Any]) -> str:
    """The output's file extension, as the registry says, known at the status check before anything is made."""
    return "png" if TOOLS[tool].output_type(values) == "image/png" else "jpg"
