"""Procedural textures from Pillow alone: surfaces (marble, wood, ...) and walls (tiles, bricks, foliage).

Every function takes its randomness from the ``rng`` argument, so the same rng state gives the same pixels.
"""
from __future__ import annotations

import math
import random
from typing import Callable

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

RGB = tuple[int, int, int]
Size = tuple[int, int]


def noise(size: Size, rng: random.Random) -> Image.Image:
    w, h = max(1, size[0]), max(1, size[1])
    return Image.frombytes("L", (w, h), rng.randbytes(w * h))


def smooth(size: Size, scale: float, rng: random.Random) -> Image.Image:
    """Low-frequency noise: a coarse grid of random values, upscaled smoothly."""
    w, h = size
    coarse = noise((max(2, int(w / scale)), max(2, int(h / scale))), rng)
    # the blur hides the grid that bicubic upscaling of white noise leaves behind; at a quarter
    # of the final size it costs a sixteenth
    quarter = (max(2, w // 4), max(2, h // 4))
    blurred = coarse.resize(quarter, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(scale / 12))
    return ImageOps.autocontrast(blurred.resize(size, Image.Resampling.BILINEAR), cutoff=1)


def squeeze(img: Image.Image, low: int, high: int) -> Image.Image:
    """Map 0..255 into low..high."""
    return img.point(lambda v: low + v * (high - low) // 255)


def contours(img: Image.Image, period: float) -> Image.Image:
    """Bands along the level lines of ``img``: growth rings from smooth noise."""
    return img.point(lambda v: int(127.5 + 127.5 * math.sin(v / period)))


def soft_blur(img: Image.Image, radius: float) -> Image.Image:
    """A wide blur done at a quarter of the size: the same look for a sixteenth of the work."""
    w, h = img.size
    small = img.resize((max(1, w // 4), max(1, h // 4)), Image.Resampling.BOX)
    return small.filter(ImageFilter.GaussianBlur(radius / 4)).resize(img.size, Image.Resampling.BILINEAR)


def tilted_gradient(size: Size, angle: float) -> Image.Image:
    """0..255 rising along direction ``angle``; built tiny and upscaled, as a linear ramp survives that."""
    w, h = size
    cw, ch = 16, max(2, round(16 * h / max(1, w)))
    dx, dy = math.cos(angle), math.sin(angle)
    values = [x / (cw - 1) * w * dx + y / (ch - 1) * h * dy for y in range(ch) for x in range(cw)]
    low, high = min(values), max(values)
    small = Image.new("L", (cw, ch))
    small.putdata([round(255 * (v - low) / (high - low or 1)) for v in values])
    return small.resize(size, Image.Resampling.BILINEAR)


def _tone(lum: Image.Image, dark: RGB, light: RGB) -> Image.Image:
    return ImageOps.colorize(lum, black=dark, white=light)


def marble(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    """Veins along the level lines of a gradient bent by turbulence, with soft halos."""
    w, h = size
    turbulence = Image.blend(smooth(size, 220, rng), smooth(size, 60, rng), 0.3)
    flow = tilted_gradient(size, math.radians(rng.uniform(25, 65)))
    field = Image.blend(flow, turbulence, 0.3)
    veins_across = rng.uniform(5.0, 7.0)
    vein_lut = [round(255 * (1 - abs(math.sin(v * math.pi * veins_across / 255))) ** 14) for v in range(256)]
    fine_lut = [round(255 * (1 - abs(math.sin(v * math.pi * veins_across * 3.1 / 255))) ** 30) for v in range(256)]
    # dithering breaks up the 8-bit steps that would otherwise show as jagged veins
    field = Image.blend(field, noise(size, rng), 0.03).filter(ImageFilter.GaussianBlur(1.0))
    unit = max(w, h) / 1000
    veins = field.point(vein_lut).filter(ImageFilter.GaussianBlur(1.6 * unit))
    fine = field.point(fine_lut).filter(ImageFilter.GaussianBlur(0.8 * unit))
    halo = soft_blur(veins, 10 * unit).point(lambda v: min(255, v * 3))
    lum = squeeze(Image.blend(smooth(size, 90, rng), smooth(size, 25, rng), 0.3), 215, 255)
    lum = ImageChops.subtract(lum, squeeze(halo, 0, 35))
    lum = ImageChops.subtract(lum, squeeze(fine, 0, 40))
    lum = ImageChops.subtract(lum, squeeze(veins, 0, 140))
    return _tone(lum, dark, light)


def wood(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    streaks = noise((max(2, w // 60), max(2, h // 3)), rng).resize(size, Image.Resampling.BICUBIC)
    fine = noise((max(2, w // 10), h), rng).resize(size, Image.Resampling.BICUBIC)
    figure = noise((max(2, w // 160), max(2, h // 24)), rng).resize(size, Image.Resampling.BICUBIC)
    rings = contours(ImageOps.autocontrast(figure), 9.0)
    lum = Image.blend(Image.blend(ImageOps.autocontrast(streaks, cutoff=1), rings, 0.35), fine, 0.25)
    lum = squeeze(ImageOps.autocontrast(lum, cutoff=1), 70, 245)
    # planks: each a little lighter or darker, with a dark seam between
    shade = Image.new("L", size, 255)
    draw = ImageDraw.Draw(shade)
    y, seam = 0.0, max(1, h // 300)
    while y < h:
        plank = h / rng.uniform(7, 10)
        draw.rectangle([0, int(y), w, int(y + plank)], fill=rng.randint(205, 255))
        draw.rectangle([0, int(y), w, int(y) + seam], fill=90)
        y += plank
    lum = ImageChops.multiply(lum, shade)
    return _tone(lum, dark, light)


def concrete(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    fine = noise(size, rng).filter(ImageFilter.GaussianBlur(0.7))
    blotch = Image.blend(smooth(size, 50, rng), smooth(size, 12, rng), 0.4)
    lum = squeeze(ImageOps.autocontrast(Image.blend(fine, blotch, 0.6), cutoff=1), 40, 235)
    draw = ImageDraw.Draw(lum)
    for _ in range(int(w * h / 2500)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.5, 2.2)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.randint(20, 90))
    return _tone(lum, dark, light)


def linen(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    warp = noise((w, max(2, h // 5)), rng).resize(size, Image.Resampling.BILINEAR)
    weft = noise((max(2, w // 5), h), rng).resize(size, Image.Resampling.BILINEAR)
    weave = ImageOps.autocontrast(Image.blend(warp, weft, 0.5), cutoff=2)
    folds = smooth(size, 140, rng)
    lum = squeeze(Image.blend(weave, folds, 0.55), 60, 255)
    return _tone(lum, dark, light)


def sand(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    grains = noise(size, rng)
    # wind ripples: level lines of a ramp bent by low-frequency noise, so mostly parallel and wavy
    field = Image.blend(tilted_gradient(size, math.radians(rng.uniform(80, 100))), smooth(size, 90, rng), 0.3)
    ripples = contours(field, 2.2)
    lum = Image.blend(Image.blend(ripples, smooth(size, 60, rng), 0.55), grains, 0.25)
    return _tone(squeeze(ImageOps.autocontrast(lum, cutoff=1), 90, 255), dark, light)


def grass(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    lum = noise((w, max(2, h // 12)), rng).resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(lum)
    blade = max(4, h // 25)
    for _ in range(int(w * h / 600)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.line([(x, y), (x + rng.uniform(-blade / 3, blade / 3), y - blade * rng.uniform(0.5, 1.2))],
                  fill=rng.randint(0, 255), width=max(1, w // 900))
    lum = Image.blend(lum, smooth(size, 40, rng), 0.35)
    return _tone(ImageOps.autocontrast(lum, cutoff=1), dark, light)


def water(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    w, h = size
    ripples = noise((max(2, w // 50), max(2, h // 6)), rng).resize(size, Image.Resampling.BICUBIC)
    lum = contours(ImageOps.autocontrast(ripples), 5.0)
    lum = Image.blend(lum, smooth(size, 80, rng), 0.5)
    return _tone(squeeze(lum, 40, 230), dark, light)


def snow(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    lum = Image.blend(smooth(size, 60, rng), noise(size, rng), 0.15)
    return _tone(squeeze(lum, 150, 255), dark, light)


def plain(size: Size, dark: RGB, light: RGB, rng: random.Random) -> Image.Image:
    return _tone(squeeze(smooth(size, 120, rng), 170, 235), dark, light)


TEXTURES: dict[str, Callable[[Size, RGB, RGB, random.Random], Image.Image]] = {
    "marble": marble, "wood": wood, "concrete": concrete, "linen": linen, "sand": sand,
    "grass": grass, "water": water, "snow": snow, "plain": plain,
}


# walls

def tiles(wall: Image.Image, rng: random.Random, grout: RGB) -> Image.Image:
    """Subway tiles over the wall's gradient."""
    w, h = wall.size
    tile_h = max(6, h // 16)
    tile_w = int(tile_h * 2.5)
    shade = Image.new("L", wall.size, 255)
    lines = Image.new("L", wall.size, 0)
    sd, ld = ImageDraw.Draw(shade), ImageDraw.Draw(lines)
    for row, y in enumerate(range(0, h, tile_h)):
        offset = (tile_w // 2) * (row % 2)
        for x in range(-offset, w, tile_w):
            sd.rectangle([x, y, x + tile_w, y + tile_h], fill=rng.randint(236, 255))
            ld.rectangle([x, y, x + tile_w, y + tile_h], outline=255, width=max(1, tile_h // 18))
    tiled = ImageChops.multiply(wall, Image.merge("RGB", (shade,) * 3))
    return Image.composite(Image.new("RGB", wall.size, grout), tiled, lines)


def bricks(wall: Image.Image, rng: random.Random) -> Image.Image:
    w, h = wall.size
    brick_h = max(6, h // 20)
    brick_w = brick_h * 3
    canvas = Image.new("RGB", wall.size, (196, 188, 176))
    draw = ImageDraw.Draw(canvas)
    gap = max(1, brick_h // 8)
    for row, y in enumerate(range(0, h, brick_h)):
        offset = (brick_w // 2) * (row % 2)
        for x in range(-offset, w, brick_w):
            base = (rng.randint(135, 175), rng.randint(58, 80), rng.randint(42, 60))
            draw.rectangle([x + gap, y + gap, x + brick_w - gap, y + brick_h - gap], fill=base)
    return Image.blend(canvas, wall, 0.2)


def foliage(wall: Image.Image, rng: random.Random) -> Image.Image:
    """Out-of-focus leaves: overlapping soft green blobs with a few light spots."""
    w, h = wall.size
    canvas = Image.new("RGB", wall.size, (42, 78, 40))
    draw = ImageDraw.Draw(canvas)
    for _ in range(90):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.12) * w
        green = (rng.randint(30, 110), rng.randint(80, 160), rng.randint(30, 80))
        draw.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=green)
    for _ in range(14):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h * 0.7), rng.uniform(0.01, 0.03) * w
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(230, 240, 190))
    canvas = canvas.filter(ImageFilter.GaussianBlur(w / 50))
    return Image.blend(canvas, wall, 0.15)
