"""A background generator that gets it wrong on purpose, and outputs as another server makes them.

    jpeg = render(image, prompt, alteration="mirror", scale=1.25, shift=(7, -4), quality=85)

An alteration changes the product before it is set on its scene, as a generative model may:
`recolour` turns its hues, `mirror` flips it, `paint-over` covers a part of it with a blot, `squash`
makes it shorter. The product is cut from its plain background by the painter either way, so an
altered output looks like any other. `scale` and `shift` make the whole output larger and move it
(an independent server's outputs are 1.25x larger and a little off-centre), `quality` its JPEG.
"""
from __future__ import annotations

import hashlib
import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageOps

from pipeline.sandbox import painter

ALTERATIONS = ("recolour", "mirror", "paint-over", "squash")
VIVID = ((230, 30, 40), (30, 160, 60), (40, 70, 220), (250, 210, 20), (240, 240, 240), (20, 20, 20))


def render(image: bytes, prompt: str, *, alteration: str | None = None, scale: float = 1.0,
           shift: tuple[int, int] = (0, 0), quality: int = painter.JPEG_QUALITY) -> bytes:
    """The background generator's output, altered and resized as asked; deterministic."""
    if alteration is not None:
        image = altered(image, alteration)
    data = painter.render(image, prompt)
    if scale == 1.0 and shift == (0, 0) and quality == painter.JPEG_QUALITY:
        return data
    with Image.open(io.BytesIO(data)) as im:
        return _finished(im.convert("RGB"), scale, shift, quality)


def fast(image: bytes, *, alteration: str | None = None, scale: float = 1.0, shift: tuple[int, int] = (0, 0),
         quality: int = painter.JPEG_QUALITY) -> bytes:
    """Fast mode's background-generator output: the uploaded picture itself (a transparent one on
    white), altered, resized, moved and re-encoded as asked. No cut-out and no scene, so it costs
    the sandbox a decode and an encode, and its product is the input's: faithful unless altered."""
    if alteration is not None:
        image = altered(image, alteration)
    with Image.open(io.BytesIO(image)) as opened:
        picture = ImageOps.exif_transpose(opened)
        if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
            rgba = picture.convert("RGBA")
            picture = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return _finished(picture.convert("RGB"), scale, shift, quality)


def _finished(out: Image.Image, scale: float, shift: tuple[int, int], quality: int) -> bytes:
    """`out` made `scale` times larger, moved by `shift`, as a JPEG of `quality`."""
    if scale != 1.0:
        out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))),
                         Image.Resampling.BICUBIC)
    if shift != (0, 0):
        out = _shifted(out, shift)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def draw_shift(seed: str, size: tuple[int, int], share: float = 0.03) -> tuple[int, int]:
    """A few per cent of the picture in x and y, the same for the same seed."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    return (round(rng.uniform(-share, share) * size[0]), round(rng.uniform(-share, share) * size[1]))


def _shifted(img: Image.Image, shift: tuple[int, int]) -> Image.Image:
    """Move the picture by `shift`, the edge it leaves filled by stretching its own edge rows."""
    dx, dy = shift
    w, h = img.size
    pad = max(abs(dx), abs(dy)) + 1
    big = Image.new("RGB", (w + 2 * pad, h + 2 * pad))
    big.paste(img, (pad, pad))
    big.paste(img.crop((0, 0, w, 1)).resize((w, pad)), (pad, 0))
    big.paste(img.crop((0, h - 1, w, h)).resize((w, pad)), (pad, h + pad))
    big.paste(big.crop((pad, 0, pad + 1, h + 2 * pad)).resize((pad, h + 2 * pad)), (0, 0))
    big.paste(big.crop((w + pad - 1, 0, w + pad, h + 2 * pad)).resize((pad, h + 2 * pad)), (w + pad, 0))
    return big.crop((pad - dx, pad - dy, pad - dx + w, pad - dy + h))


def altered(image: bytes, alteration: str) -> bytes:
    """The product photo with its product changed by `alteration` (one of ALTERATIONS), as a PNG."""
    with Image.open(io.BytesIO(image)) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGBA")
    rng = random.Random(hashlib.sha256(image + alteration.encode()).digest())
    mask = painter.product_mask(photo).point(lambda v: 255 if v > 127 else 0)
    box = mask.getbbox() or (0, 0, *photo.size)
    ground = _ground(photo)
    if alteration == "mirror":
        result = _mirrored(photo, mask, box, ground)
        if _alike(result, photo, box):  # a symmetric product mirrored is the same product: squash it
            result = _squashed(photo, box, ground, rng)
    elif alteration == "recolour":
        result = _recoloured(photo, mask, rng)
    elif alteration == "paint-over":
        result = _painted_over(photo, mask, box, rng)
    elif alteration == "squash":
        result = _squashed(photo, box, ground, rng)
    else:
        raise ValueError(f"no alteration {alteration!r}; one of {', '.join(ALTERATIONS)}")
    buffer = io.BytesIO()
    result.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _alike(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> bool:
    diff = ImageChops.difference(a.convert("RGB").crop(box), b.convert("RGB").crop(box)).convert("L")
    return sum(i * n for i, n in enumerate(diff.histogram())) / max(1, diff.width * diff.height) < 6


def _ground(photo: Image.Image) -> tuple[int, int, int]:
    return photo.convert("RGB").getpixel((1, 1))


def _mirrored(photo: Image.Image, mask: Image.Image, box: tuple[int, int, int, int],
              ground: tuple[int, int, int]) -> Image.Image:
    """The product flipped left to right about its own centre, where it stood."""
    x0, y0, x1, y1 = box
    product = photo.crop(box).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    result = Image.new("RGBA", photo.size, (*ground, 255))
    result.paste(product, (x0, y0))
    return result


def _recoloured(photo: Image.Image, mask: Image.Image, rng: random.Random) -> Image.Image:
    """The product's hues turned by a third to two thirds of the wheel, greys made coloured."""
    hsv = photo.convert("RGB").convert("HSV")
    h, s, v = hsv.split()
    turn = rng.randint(85, 170)
    h = h.point(lambda x: (x + turn) % 256)
    s = s.point(lambda x: max(x, 120))
    turned = Image.merge("HSV", (h, s, v)).convert("RGB")
    return Image.composite(turned, photo.convert("RGB"), mask)


def _painted_over(photo: Image.Image, mask: Image.Image, box: tuple[int, int, int, int],
                  rng: random.Random) -> Image.Image:
    """A band across 40-55% of the product's height painted in a colour far from its own."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    bh = round(h * rng.uniform(0.4, 0.55))
    by = y0 + rng.randint(0, max(0, h - bh))
    band = Image.new("L", photo.size, 0)
    ImageDraw.Draw(band).rectangle([x0, by, x1, by + bh], fill=255)
    band = ImageChops.darker(band, mask)
    mean = photo.convert("RGB").resize((1, 1), Image.Resampling.BOX, box=box).getpixel((0, 0))
    colour = max(VIVID, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, mean)))
    result = photo.convert("RGB")
    result.paste(colour, mask=band)
    return result


def _squashed(photo: Image.Image, box: tuple[int, int, int, int], ground: tuple[int, int, int],
              rng: random.Random) -> Image.Image:
    """The product made 30-45% shorter, standing where it stood."""
    x0, y0, x1, y1 = box
    keep = rng.uniform(0.55, 0.7)
    product = photo.crop(box)
    short = product.resize((x1 - x0, max(1, round((y1 - y0) * keep))), Image.Resampling.LANCZOS)
    result = Image.new("RGBA", photo.size, (*ground, 255))
    result.paste(short, (x0, y1 - short.height))
    return result
