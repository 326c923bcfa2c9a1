"""Scene -> painted background: wall, surface in perspective, studio sweep, colour grade.

    background = paint((1000, 1000), scene, random.Random(1), horizon_y=horizon_for(bbox, 1000))

Everything random comes from the ``rng`` passed in, so a background is a pure function of its inputs.
"""
from __future__ import annotations

import random

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

from pipeline.sandbox import textures
from pipeline.sandbox.scene import ALONG_DEPTH, MIN_FLOOR_STEP, RGB, Scene, luma, mix


def vertical_gradient(size: tuple[int, int], stops: list[tuple[float, RGB]]) -> Image.Image:
    w, h = size
    column = Image.new("RGB", (1, h))
    pixels = []
    for y in range(h):
        t = y / max(1, h - 1)
        for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
            if p0 <= t <= p1:
                pixels.append(mix(c0, c1, (t - p0) / max(1e-6, p1 - p0)))
                break
        else:
            pixels.append(stops[-1][1] if t > stops[-1][0] else stops[0][1])
    column.putdata(pixels)
    return column.resize((w, h), Image.Resampling.NEAREST)


def soft_spot(diameter: int) -> Image.Image:
    """L disc, 255 in the centre fading smoothly to 0 at its rim."""
    # radial_gradient is 0 at the centre and 255 at the corners, so the rim is at about 181
    falloff = [round(255 * (1 - min(1.0, v / 181)) ** 2) for v in range(256)]
    return Image.radial_gradient("L").point(falloff).resize((diameter, diameter), Image.Resampling.BILINEAR)


def _glow(canvas: Image.Image, colour: RGB, at: tuple[float, float], radius: float,
          strength: float) -> Image.Image:
    """Screen a soft radial light onto ``canvas``."""
    w, h = canvas.size
    r = max(2, int(radius))
    spot = soft_spot(2 * r).point(lambda v: int(v * strength))
    mask = Image.new("L", (w, h), 0)
    mask.paste(spot, (int(at[0] * w) - r, int(at[1] * h) - r))
    return Image.composite(Image.new("RGB", (w, h), colour), canvas, mask)


def paint_wall(size: tuple[int, int], scene: Scene, rng: random.Random, horizon_y: int) -> Image.Image:
    w, h = size
    c = scene.wall_colour
    hz = max(1, horizon_y) / h
    if scene.wall == "sunset":
        wall = vertical_gradient(size, [(0.0, (86, 62, 124)), (hz * 0.55, (214, 104, 104)),
                                        (hz, (255, 184, 102)), (1.0, (255, 206, 140))])
        wall = _glow(wall, (255, 236, 180), (0.62, hz), w * 0.22, 0.9)
    elif scene.wall == "sky":
        wall = vertical_gradient(size, [(0.0, (96, 156, 220)), (hz * 0.92, (196, 224, 242)),
                                        (hz * 0.93, (60, 130, 175)), (hz, (110, 170, 200)),
                                        (1.0, (110, 170, 200))])
    else:
        top, bottom = mix(c, (0, 0, 0), 0.16), mix(c, (255, 255, 255), 0.12)
        wall = vertical_gradient(size, [(0.0, top), (hz, bottom), (1.0, bottom)])
        if scene.wall == "tiles":
            wall = textures.tiles(wall, rng, grout=mix(c, (90, 90, 90), 0.3))
        elif scene.wall == "brick":
            wall = textures.bricks(wall, rng)
        elif scene.wall == "foliage":
            wall = textures.foliage(wall, rng)
    # the wall is behind the product, so it is out of focus
    half = wall.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX)
    return half.filter(ImageFilter.GaussianBlur(max(0.5, w / 500))).resize(size, Image.Resampling.BICUBIC)


def paint_surface(size: tuple[int, int], scene: Scene, rng: random.Random) -> Image.Image:
    """A tabletop texture seen in perspective, sharper in front than at the back."""
    w, h = size
    src_w, src_h = int(w * 1.7), max(8, int(h * 1.9))
    paint_texture = textures.TEXTURES[scene.texture or "plain"]
    if scene.texture in ALONG_DEPTH:  # planks run away from the viewer, so they converge
        flat = paint_texture((src_h, src_w), scene.dark, scene.light, rng).transpose(Image.Transpose.ROTATE_90)
    else:
        flat = paint_texture((src_w, src_h), scene.dark, scene.light, rng)
    # the far edge shows the whole texture width, the near edge its middle third
    coeffs = _perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)],
                                 [(0, 0), (src_w, 0), (src_w * 0.68, src_h), (src_w * 0.32, src_h)])
    surface = flat.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    far = surface.filter(ImageFilter.GaussianBlur(max(1.0, w / 300)))
    depth = vertical_gradient((w, h), [(0.0, (255, 255, 255)), (0.6, (0, 0, 0)), (1.0, (0, 0, 0))])
    surface = Image.composite(far, surface, depth.convert("L"))
    shade = vertical_gradient((w, h), [(0.0, (232, 232, 232)), (0.4, (255, 255, 255)), (1.0, (222, 222, 222))])
    return ImageChops.multiply(surface, shade)


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """The 8 coefficients Pillow's PERSPECTIVE transform needs to map ``dst`` corners to ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.append(v)
    return _solve(rows, rhs)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def paint(size: tuple[int, int], scene: Scene, rng: random.Random, horizon_y: int) -> Image.Image:
    """The whole background: wall, surface below ``horizon_y`` (none for a studio sweep), light."""
    w, h = size
    horizon_y = min(max(horizon_y, 1), h - 1)
    wall = paint_wall(size, scene, rng, horizon_y)
    if scene.texture is None:
        canvas = _studio_sweep(size, scene, horizon_y)
    else:
        surface = paint_surface((w, h - horizon_y), scene, rng)
        wall = _apart_from(wall, surface, horizon_y)
        canvas = wall.copy()
        canvas.paste(surface, (0, horizon_y))
        edge = Image.new("L", size, 0)
        edge.paste(255, (0, horizon_y, w, h))
        canvas = Image.composite(canvas, wall, edge.filter(ImageFilter.GaussianBlur(max(1.0, h / 500))))
    if scene.glow is not None:
        canvas = _glow(canvas, scene.glow, scene.glow_at, max(w, h) * 0.75, 0.55)
    return _grade(canvas, scene)


def _apart_from(wall: Image.Image, surface: Image.Image, horizon_y: int) -> Image.Image:
    """The wall, darkened (or lightened) where it would meet the surface in the same tone: a floor line shows."""
    w = wall.width
    band = max(2, wall.height // 40)
    above = ImageStat.Stat(wall.crop((0, max(0, horizon_y - band), w, horizon_y)).convert("L")).mean[0]
    below = ImageStat.Stat(surface.crop((0, 0, w, min(surface.height, band))).convert("L")).mean[0]
    if abs(above - below) >= MIN_FLOOR_STEP:
        return wall
    if below > 128:  # a light surface: a darker wall behind it
        factor = max(0.0, below - MIN_FLOOR_STEP) / max(1.0, above)
        return wall.point(lambda v: int(v * factor))
    return ImageChops.screen(wall, Image.new("RGB", wall.size, (MIN_FLOOR_STEP * 2,) * 3))


def _studio_sweep(size: tuple[int, int], scene: Scene, horizon_y: int) -> Image.Image:
    """A plain wall over a plain floor of another tone, meeting in a soft but visible line."""
    w, h = size
    c = scene.wall_colour
    hz = horizon_y / h
    wall = vertical_gradient(size, [(0.0, mix(c, (0, 0, 0), 0.22)), (hz, c), (1.0, c)])
    wall = _glow(wall, mix(c, (255, 255, 255), 0.45), (0.5, hz * 0.85), max(w, h) * 0.45, 0.6)
    # a second colour word colours the floor; else a lighter floor under a dark wall, a darker one under a light
    floor = scene.light if scene.light != Scene.light else (
        mix(c, (255, 255, 255), 0.4) if luma(c) < 150 else mix(c, (0, 0, 0), 0.2))
    if abs(luma(floor) - luma(c)) < 20:
        floor = mix(floor, (0, 0, 0) if luma(c) > 100 else (255, 255, 255), 0.25)
    floor_img = vertical_gradient(size, [(0.0, floor), (hz, floor), (1.0, mix(floor, (255, 255, 255), 0.12))])
    edge = Image.new("L", size, 0)
    edge.paste(255, (0, horizon_y, w, h))
    return Image.composite(floor_img, wall, edge.filter(ImageFilter.GaussianBlur(max(1.0, h / 400))))


def _grade(canvas: Image.Image, scene: Scene) -> Image.Image:
    if scene.warmth:
        tone = (255, 170, 90) if scene.warmth > 0 else (110, 160, 255)
        canvas = Image.blend(canvas, Image.new("RGB", canvas.size, tone), abs(scene.warmth) * 0.14)
    if scene.brightness != 1.0:
        canvas = canvas.point(lambda v: min(255, int(v * scene.brightness)))
    # a gentle vignette keeps the eye on the product
    w, h = canvas.size
    vignette = ImageOps.invert(Image.radial_gradient("L")).resize((w, h))
    vignette = vignette.point(lambda v: 200 + v * 55 // 255 if v < 255 else 255)
    return ImageChops.multiply(canvas, Image.merge("RGB", (vignette,) * 3))


def horizon_for(bbox: tuple[int, int, int, int] | None, height: int) -> int:
    """Where the table's back edge goes: behind the product's lower part."""
    if bbox is None:
        return int(height * 0.62)
    top, bottom = bbox[1], bbox[3]
    y = bottom - 0.42 * (bottom - top)
    return int(min(max(y, height * 0.3), height * 0.85))

