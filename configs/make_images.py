"""Draw the example product photos in configs/images/: simple shaded shapes on a plain background.

    python configs/make_images.py            # rewrite configs/images/*.jpg|png

The background is one flat colour so the sandbox can cut the product out by its distance from the
border colour; products are saturated or dark so they stand well apart from it.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 512
SCALE = 2  # draw at 2x and downsample, for smooth edges
BACKGROUND = (244, 243, 239)
HERE = Path(__file__).resolve().parent

Canvas = tuple[Image.Image, ImageDraw.ImageDraw]


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(c * factor))) for c in color)  # type: ignore[return-value]


def _fill(img: Image.Image, mask: Image.Image, color: tuple[int, int, int], *, light: float = 1.25,
          dark: float = 0.65) -> None:
    """Paint ``mask`` with ``color``, lit from the left: a horizontal gradient across its extent."""
    box = mask.getbbox()
    if box is None:
        return
    left, _, right, _ = box
    ramp = Image.linear_gradient("L").rotate(90).resize((max(1, right - left), img.height))
    gradient = Image.new("L", img.size, 0)
    gradient.paste(ramp, (left, 0))
    lit = Image.composite(Image.new("RGB", img.size, _shade(color, dark)),
                          Image.new("RGB", img.size, _shade(color, light)), gradient)
    img.paste(lit, mask=mask)


def _shape(img: Image.Image, draw: Callable[[ImageDraw.ImageDraw], None]) -> Image.Image:
    mask = Image.new("L", img.size, 0)
    draw(ImageDraw.Draw(mask))
    return mask


def _s(*values: float) -> list[int]:
    return [round(v * SCALE) for v in values]


def mug(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    blue = (38, 110, 170)
    d.ellipse(_s(300, 200, 430, 360), outline=_shade(blue, 0.8), width=26 * SCALE)  # handle
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(130, 150, 340, 400), 28 * SCALE, fill=255)), blue)
    d.ellipse(_s(130, 132, 340, 172), fill=_shade(blue, 1.3))
    d.ellipse(_s(142, 138, 328, 166), fill=(52, 38, 30))  # coffee


def bottle(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    green = (30, 140, 110)
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(196, 150, 316, 440), 40 * SCALE, fill=255)), green)
    _fill(img, _shape(img, lambda m: m.rectangle(_s(226, 110, 286, 160), fill=255)), green)
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(218, 70, 294, 118), 10 * SCALE, fill=255)),
          (40, 40, 44))
    d.rectangle(_s(196, 250, 316, 300), fill=(232, 200, 60))  # label


def sneaker(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    red = (200, 48, 48)
    upper = (88, 345, 92, 215, 150, 200, 210, 212, 250, 248, 300, 232, 335, 262, 405, 288, 448, 318, 452, 345)
    _fill(img, _shape(img, lambda m: m.polygon(_s(*upper), fill=255)), red)
    d.polygon(_s(150, 300, 240, 268, 330, 300, 240, 320), fill=(30, 30, 36))  # side stripe
    d.rounded_rectangle(_s(70, 335, 462, 375), 18 * SCALE, fill=(60, 60, 66))  # sole
    for i in range(4):  # laces across the instep
        x, y = 252 + i * 22, 250 + i * 9
        d.line(_s(x - 12, y - 10, x + 12, y + 14), fill=(255, 196, 40), width=6 * SCALE)


def headphones(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    black = (45, 45, 52)
    d.arc(_s(120, 90, 392, 380), 190, 350, fill=black, width=26 * SCALE)
    for x in (100, 332):
        _fill(img, _shape(img, lambda m, x=x: m.rounded_rectangle(_s(x, 230, x + 80, 380), 30 * SCALE,
                                                                  fill=255)), black)
        d.rounded_rectangle(_s(x + (60 if x < 256 else 0), 250, x + (80 if x < 256 else 20), 360),
                            8 * SCALE, fill=(200, 70, 40))  # cushions


def watch(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    brown = (120, 72, 40)
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(206, 40, 306, 472), 30 * SCALE, fill=255)), brown)
    _fill(img, _shape(img, lambda m: m.ellipse(_s(146, 146, 366, 366), fill=255)), (150, 150, 160))
    d.ellipse(_s(166, 166, 346, 346), fill=(24, 36, 70))
    for angle in range(0, 360, 30):
        d.pieslice(_s(176, 176, 336, 336), angle - 1, angle + 1, fill=(226, 186, 90))
    d.ellipse(_s(186, 186, 326, 326), fill=(24, 36, 70))
    d.line(_s(256, 256, 256, 196), fill=(255, 196, 40), width=6 * SCALE)
    d.line(_s(256, 256, 300, 276), fill=(226, 186, 90), width=5 * SCALE)


def lamp(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    yellow = (230, 170, 30)
    _fill(img, _shape(img, lambda m: m.ellipse(_s(150, 420, 350, 460), fill=255)), (60, 60, 66))
    d.line(_s(250, 440, 200, 280), fill=(70, 70, 76), width=14 * SCALE)
    d.line(_s(200, 280, 300, 170), fill=(70, 70, 76), width=14 * SCALE)
    _fill(img, _shape(img, lambda m: m.polygon(_s(250, 90, 350, 90, 420, 230, 180, 230), fill=255)), yellow)
    d.ellipse(_s(270, 215, 330, 250), fill=(255, 236, 150))  # bulb


def backpack(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    orange = (220, 110, 30)
    d.arc(_s(200, 50, 312, 160), 180, 360, fill=_shade(orange, 0.6), width=16 * SCALE)  # handle
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(130, 100, 382, 450), 70 * SCALE, fill=255)), orange)
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(170, 280, 342, 430), 30 * SCALE, fill=255)),
          _shade(orange, 0.8))
    d.line(_s(180, 300, 332, 300), fill=(50, 40, 30), width=5 * SCALE)  # zip


def plant_pot(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    green = (50, 140, 60)
    for box, angle in (((150, 60, 250, 250), 25), ((262, 60, 362, 250), -25), ((211, 30, 301, 240), 0)):
        leaf = Image.new("L", img.size, 0)
        ImageDraw.Draw(leaf).ellipse(_s(*box), fill=255)
        cx, cy = (box[0] + box[2]) / 2 * SCALE, box[3] * SCALE
        _fill(img, leaf.rotate(angle, center=(cx, cy)), green)
    terracotta = (190, 90, 55)
    _fill(img, _shape(img, lambda m: m.polygon(_s(160, 290, 352, 290, 322, 460, 190, 460), fill=255)), terracotta)
    _fill(img, _shape(img, lambda m: m.rectangle(_s(145, 250, 367, 295), fill=255)), _shade(terracotta, 0.9))


def camera(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    grey = (55, 58, 66)
    _fill(img, _shape(img, lambda m: m.rounded_rectangle(_s(80, 160, 432, 400), 30 * SCALE, fill=255)), grey)
    d.rounded_rectangle(_s(140, 120, 230, 170), 10 * SCALE, fill=_shade(grey, 0.8))
    d.ellipse(_s(176, 196, 336, 356), fill=(25, 25, 30))
    _fill(img, _shape(img, lambda m: m.ellipse(_s(200, 220, 312, 332), fill=255)), (60, 90, 140))
    d.ellipse(_s(236, 246, 262, 272), fill=(160, 195, 240))
    d.rectangle(_s(360, 180, 410, 210), fill=(200, 200, 205))  # flash


def sunglasses(img: Image.Image, d: ImageDraw.ImageDraw) -> None:
    frame = (30, 30, 34)
    d.arc(_s(216, 210, 296, 270), 200, 340, fill=frame, width=10 * SCALE)  # bridge
    d.line(_s(70, 220, 40, 200), fill=frame, width=10 * SCALE)
    d.line(_s(442, 220, 472, 200), fill=frame, width=10 * SCALE)
    for x in (66, 286):
        d.rounded_rectangle(_s(x, 200, x + 160, 320), 50 * SCALE, fill=frame)
        _fill(img, _shape(img, lambda m, x=x: m.rounded_rectangle(_s(x + 10, 210, x + 150, 310), 44 * SCALE,
                                                                  fill=255)), (40, 80, 70), light=1.6)


# name -> (drawing, file format); both formats appear so uploads of each are exercised.
PRODUCTS: dict[str, tuple[Callable[[Image.Image, ImageDraw.ImageDraw], None], str]] = {
    "mug": (mug, "jpg"), "bottle": (bottle, "png"), "sneaker": (sneaker, "jpg"),
    "headphones": (headphones, "png"), "watch": (watch, "jpg"), "lamp": (lamp, "png"),
    "backpack": (backpack, "jpg"), "plant-pot": (plant_pot, "png"), "camera": (camera, "jpg"),
    "sunglasses": (sunglasses, "png"),
}


def render(name: str) -> Image.Image:
    """The product ``name`` at SIZE x SIZE on the plain background."""
    img = Image.new("RGB", (SIZE * SCALE, SIZE * SCALE), BACKGROUND)
    PRODUCTS[name][0](img, ImageDraw.Draw(img))
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".png":
        # A palette keeps the PNGs small; the background stays one exact colour.
        img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)
    else:
        img.save(path, quality=88, optimize=True)


def main(out_dir: Path = HERE / "images") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, fmt) in PRODUCTS.items():
        path = out_dir / f"{name}.{fmt}"
        save(render(name), path)
        print(f"{path.relative_to(HERE.parent)}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "images")
