"""The sandbox's picture: cut the product from its plain background and set it on a painted scene.

    jpeg = render(open("mug.jpg", "rb").read(), "on a white marble counter, soft morning light")

The output is a JPEG at the input's (EXIF-upright) size, and the same bytes and prompt always give
the same output. This is a local preview of the flow, not LightX's model.
"""
from __future__ import annotations

import functools
import hashlib
import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps, ImageStat

from pipeline.sandbox import canvas
from pipeline.sandbox import scene as scenes

WORK_SIDE = 1024          # masks and backgrounds are computed at most this large, then upscaled
MIN_WORK_SIDE = 32
JPEG_QUALITY = 90


def render(image_bytes: bytes, prompt: str) -> bytes:
    """The output JPEG for one input image and prompt."""
    rng = random.Random(hashlib.sha256(image_bytes + b"\0" + prompt.encode()).digest())
    with Image.open(io.BytesIO(image_bytes)) as opened:
        original = ImageOps.exif_transpose(opened).convert("RGBA")
    size = original.size
    scale = min(1.0, WORK_SIDE / max(size))
    # tiny or extremely thin images are painted a little larger, then scaled back
    work_size = (max(MIN_WORK_SIDE, round(size[0] * scale)), max(MIN_WORK_SIDE, round(size[1] * scale)))
    work = original.resize(work_size, Image.Resampling.LANCZOS) if work_size != size else original

    mask = product_mask(work)
    coverage = ImageStat.Stat(mask).mean[0] / 255
    product = original
    if not 0.003 < coverage < 0.92:
        # No plain background to cut away: show the whole picture as a print standing on the scene.
        product, mask = _as_print(original, work_size)
    bbox = mask.point(lambda v: 255 if v > 127 else 0).getbbox()

    scene = scenes.contrasting(scenes.parse_prompt(prompt), _product_colour(work, mask))
    background = canvas.paint(work_size, scene, rng, canvas.horizon_for(bbox, work_size[1]))
    background = _with_shadow(background, mask, bbox)

    if work_size != size:
        background = background.resize(size, Image.Resampling.BICUBIC)
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    out = Image.composite(product.convert("RGB"), background, mask)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _product_colour(img: Image.Image, mask: Image.Image) -> tuple[int, int, int]:
    """The product's mean colour (over its mask); the scene is kept apart from it."""
    inside = mask.point(lambda v: 255 if v > 127 else 0)
    if inside.getbbox() is None:
        inside = None
    return tuple(round(v) for v in ImageStat.Stat(img.convert("RGB"), inside).mean)  # type: ignore[return-value]


def product_mask(img: Image.Image) -> Image.Image:
    """L mask, 255 on the product: its alpha if it has one, else pixels far from the border colour."""
    alpha = img.getchannel("A")
    if alpha.getextrema()[0] < 250:
        return alpha
    rgb = img.convert("RGB")
    w, h = rgb.size
    border = max(2, round(min(w, h) * 0.02))
    strips = [rgb.crop(box) for box in ((0, 0, w, border), (0, h - border, w, h),
                                        (0, 0, border, h), (w - border, 0, w, h))]
    medians = [ImageStat.Stat(s).median for s in strips]
    background = tuple(sorted(m[c] for m in medians)[len(medians) // 2] for c in range(3))
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background))
    r, g, b = diff.split()
    distance = ImageChops.lighter(ImageChops.lighter(r, g), b)
    threshold = _threshold(distance, border)
    binary = distance.point(lambda v: 255 if v > threshold else 0)
    # open (drop specks), then close (bridge hairline gaps)
    binary = _dilate(_erode(binary, 1), 1)
    binary = _erode(_dilate(binary, 2), 2)
    binary = ImageChops.lighter(binary, _filled_holes(binary))
    soft = max(0.8, min(w, h) / 700)
    return _erode(binary, 1).filter(ImageFilter.GaussianBlur(soft))


def _dilate(binary: Image.Image, r: int) -> Image.Image:
    """MaxFilter(2r+1) of a 0/255 image, exact and ten times faster (box blur, then any > 0)."""
    while r > 3:  # beyond this the blurred value of a lone pixel can round to 0
        binary, r = _dilate(binary, 3), r - 3
    return binary.filter(ImageFilter.BoxBlur(r)).point(lambda v: 255 if v > 0 else 0)


def _erode(binary: Image.Image, r: int) -> Image.Image:
    """MinFilter(2r+1) of a 0/255 image."""
    return binary.filter(ImageFilter.BoxBlur(r)).point(lambda v: 255 if v >= 255 else 0)


def _threshold(distance: Image.Image, border: int) -> int:
    """A colour distance just above the border's own noise (JPEG artefacts, gentle gradients)."""
    w, h = distance.size
    hist = [0] * 256
    for box in ((0, 0, w, border), (0, h - border, w, h)):
        hist = [a + b for a, b in zip(hist, distance.crop(box).histogram())]
    total, seen = sum(hist), 0
    for value, count in enumerate(hist):
        seen += count
        if seen >= 0.95 * total:
            return min(80, max(24, value + 16))
    return 40


def _filled_holes(binary: Image.Image) -> Image.Image:
    """The product with the regions it encloses (a white label on a red mug), found at low resolution.

    A hole behind only a thin wall of product (the inside of a mug's handle) is background seen
    through a gap, so it stays open; one deep inside the product is part of it.
    """
    w, h = binary.size
    step = max(1, max(w, h) // 160)
    small = binary.resize((max(1, w // step), max(1, h // step)), Image.Resampling.BOX)
    product = small.point(lambda v: 255 if v > 64 else 0)
    # a one-pixel frame of background joins everything that touches the image edge
    background = ImageOps.expand(ImageOps.invert(product), border=1, fill=255)
    frame = ImageOps.expand(Image.new("L", product.size, 0), border=1, fill=255)
    outside = _reconstruct(frame, background)
    holes = ImageChops.subtract(background, outside)
    bbox = product.getbbox()
    if bbox is not None and holes.getbbox() is not None:
        reach = max(1, round(0.12 * max(bbox[2] - bbox[0], bbox[3] - bbox[1])))
        near = _dilate(outside, reach)
        gaps = _reconstruct(ImageChops.darker(holes, near), holes)
        outside = ImageChops.lighter(outside, gaps)
    inside = ImageOps.invert(outside).crop((1, 1, product.width + 1, product.height + 1))
    # shrink a little so the product's own edge, not this coarse one, sets the outline
    inside = _erode(inside, 1)
    return inside.resize((w, h), Image.Resampling.BILINEAR).point(lambda v: 255 if v > 127 else 0)


def _reconstruct(seed: Image.Image, mask: Image.Image) -> Image.Image:
    """The parts of ``mask`` connected to ``seed``: a flood fill made of whole-image operations."""
    grown = ImageChops.darker(seed, mask)
    while True:
        previous = grown
        for _ in range(8):
            grown = ImageChops.darker(_dilate(grown, 1), mask)
        if ImageChops.difference(grown, previous).getbbox() is None:
            return grown


def _as_print(original: Image.Image, work_size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    w, h = original.size
    pw, ph = max(1, int(w * 0.62)), max(1, int(h * 0.62))
    x, y = (w - pw) // 2, int(h * 0.14)
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    layer.paste(original.resize((pw, ph), Image.Resampling.LANCZOS), (x, y))
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (x, y, x + pw, y + ph))
    return layer, mask.resize(work_size, Image.Resampling.BILINEAR)


def _with_shadow(background: Image.Image, mask: Image.Image,
                 bbox: tuple[int, int, int, int] | None) -> Image.Image:
    """Darken the background under the product's base: a wide soft shadow and a tight contact core."""
    if bbox is None:
        return background
    x0, y0, x1, y1 = bbox
    foot_top = y1 - max(2, (y1 - y0) // 12)
    foot = mask.crop((x0, foot_top, x1, y1)).point(lambda v: 255 if v > 127 else 0).getbbox()
    fx0, fx1 = (x0 + foot[0], x0 + foot[2]) if foot else (x0, x1)
    width = max(4, fx1 - fx0)
    cx = (fx0 + fx1) / 2
    shadow = Image.new("L", background.size, 0)
    draw = ImageDraw.Draw(shadow)
    rx, ry = width * 0.62, max(3, width * 0.09)
    draw.ellipse([cx - rx, y1 - ry * 0.9, cx + rx, y1 + ry * 1.1], fill=150)
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, width * 0.07)))
    core = Image.new("L", background.size, 0)
    rx, ry = width * 0.5, max(2, width * 0.035)
    ImageDraw.Draw(core).ellipse([cx - rx, y1 - ry * 1.2, cx + rx, y1 + ry * 0.8], fill=220)
    core = core.filter(ImageFilter.GaussianBlur(max(1, width * 0.02)))
    shade = ImageChops.lighter(shadow, core)
    dark = background.point(lambda v: v * 30 // 100)
    return Image.composite(dark, background, shade)


@functools.cache
def fast_jpeg() -> bytes:
    """The fixed 64x64 output of fast mode."""
    img = Image.new("RGB", (64, 64), (96, 150, 160))
    ImageDraw.Draw(img).ellipse([16, 12, 48, 52], fill=(235, 236, 230))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
