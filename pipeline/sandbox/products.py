"""Product photos to test the fidelity gate on: varied, drawn, on a plain background.

    path = draw(Path("p7.jpg"), 7)      # the same index always draws the same product

Each has a body (box, bottle, can, round), a colour, a light-to-dark shading, a label or logo off its
centre and often a handle or spout on one side, so that mirroring it changes it as it would a real one.
"""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

BACKGROUNDS = ((246, 246, 244), (255, 255, 255), (238, 240, 243), (244, 240, 232))
COLOURS = ((200, 40, 50), (40, 90, 180), (40, 140, 70), (230, 140, 30), (120, 60, 160), (20, 130, 140),
           (30, 40, 80), (200, 160, 40), (110, 70, 40), (230, 120, 160), (60, 60, 65), (150, 30, 90))


def draw(path: Path, index: int, size: int = 512) -> Path:
    """Draw product number `index`, saved as JPEG or PNG by the suffix of `path`."""
    rng = random.Random(f"product:{index}")
    ground = BACKGROUNDS[index % len(BACKGROUNDS)]
    im = Image.new("RGB", (size, size), ground)
    d = ImageDraw.Draw(im)
    colour = COLOURS[index % len(COLOURS)]
    dark = tuple(round(c * 0.65) for c in colour)
    w, h = rng.uniform(0.3, 0.5) * size, rng.uniform(0.45, 0.65) * size
    x0, y0 = (size - w) / 2 + rng.uniform(-0.05, 0.05) * size, size * 0.88 - h
    x1, y1 = x0 + w, y0 + h
    kind = index % 4
    if rng.random() < 0.7:  # a handle or spout on one side
        side = rng.choice((-1, 1))
        hx = x1 if side > 0 else x0
        d.ellipse([hx - w * 0.25, y0 + h * 0.25, hx + w * 0.25, y0 + h * 0.6], outline=dark, width=max(4, size // 40))
    if kind == 0:
        d.rectangle([x0, y0, x1, y1], fill=colour)
    elif kind == 1:  # a bottle: body and neck
        d.rounded_rectangle([x0, y0 + h * 0.3, x1, y1], radius=w * 0.2, fill=colour)
        d.rectangle([x0 + w * 0.35, y0, x1 - w * 0.35, y0 + h * 0.32], fill=dark)
    elif kind == 2:
        d.rounded_rectangle([x0, y0, x1, y1], radius=w * 0.12, fill=colour)
        d.ellipse([x0, y0 - h * 0.06, x1, y0 + h * 0.06], fill=tuple(min(255, round(c * 1.25)) for c in colour))
    else:
        d.ellipse([x0, y0, x1, y1], fill=colour)
    # shading: the right third darker
    d.rectangle([x0 + w * 0.72, y0 + h * 0.35, x0 + w * 0.8, y1 - h * 0.1], fill=dark)
    # a label off centre, with a mark on it
    lx, ly = x0 + w * rng.uniform(0.1, 0.3), y0 + h * rng.uniform(0.4, 0.55)
    # never near the background's colour: the sandbox would cut a label like that out with the background
    label = (245, 205, 70) if sum(colour) < 450 and colour[0] < 180 else (30, 30, 35)
    d.rectangle([lx, ly, lx + w * 0.4, ly + h * 0.22], fill=label)
    d.ellipse([lx + w * 0.04, ly + h * 0.04, lx + w * 0.16, ly + h * 0.16], fill=colour)
    d.rectangle([lx + w * 0.2, ly + h * 0.06, lx + w * 0.36, ly + h * 0.09], fill=dark)
    im.save(path, quality=92) if path.suffix.lower() in (".jpg", ".jpeg") else im.save(path)
    return path
