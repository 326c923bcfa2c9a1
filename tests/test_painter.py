"""The sandbox's pictures, the first a newcomer sees: scene colours from the scene's words, the product
standing out from what is painted behind it, and a floor line under it."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, ImageStat

from pipeline.inputs.validate import validate
from pipeline.sandbox import painter, scene as scenes
from pipeline.sandbox.scene import COLOURS, MIN_CONTRAST, parse_prompt, scene_text

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("prompt,scene", [
    ("a blue ceramic coffee mug on a white marble kitchen counter", "on a white marble kitchen counter"),
    ("a pair of black over-ear headphones on a tidy oak desk", "on a tidy oak desk"),
    ("a small succulent in a terracotta pot on a bright windowsill", "on a bright windowsill"),
    ("a lamp in a minimalist home office at dusk", "in a minimalist home office at dusk"),
    ("on the beach", "on the beach"),
    ("studio shot, teal background", "studio shot, teal background"),
])
def test_the_scene_is_what_follows_the_product(prompt, scene):
    assert scene_text(prompt) == scene


@pytest.mark.parametrize("prompt,texture,not_wall", [
    ("a blue ceramic coffee mug on a white marble kitchen counter", "marble", "blue"),
    ("a red canvas sneaker on a sunlit concrete city sidewalk", "concrete", "red"),
    ("a pair of black over-ear headphones on a tidy oak desk", "wood", "black"),
    ("a green insulated water bottle on a mossy rock", "concrete", "green"),  # rock, not "water"
    ("a leather-strap wristwatch with a navy dial on dark slate", "concrete", "navy"),
])
def test_product_words_do_not_colour_the_scene(prompt, texture, not_wall):
    scene = parse_prompt(prompt)
    assert scene.texture == texture and scene.wall_colour != COLOURS[not_wall]


def test_scene_colour_words_still_colour_the_scene():
    assert parse_prompt("a white mug against a teal wall").wall_colour == COLOURS["teal"]
    assert parse_prompt("a mug on black marble").dark != parse_prompt("a mug on white marble").dark


def _rendered(image: bytes, prompt: str) -> tuple[Image.Image, Image.Image, Image.Image]:
    """(input, output, product mask) at the input's size. The mask is the test's own: the input's pixels
    far from its corner colour (every product here stands on a plain background)."""
    original = Image.open(io.BytesIO(image)).convert("RGB")
    output = Image.open(io.BytesIO(painter.render(image, prompt))).convert("RGB")
    plain = Image.new("RGB", original.size, original.getpixel((0, 0)))
    mask = ImageChops.difference(original, plain).convert("L").point(lambda v: 255 if v > 40 else 0)
    return original, output, mask


_LAB = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB", colorTemp=6500),
                               "RGB", "LAB")


def _delta_e(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """CIE76 colour difference, by LittleCMS (not the sandbox's own colour code)."""
    def lab(rgb):
        L, A, B = ImageCms.applyTransform(Image.new("RGB", (1, 1), rgb), _LAB).getpixel((0, 0))
        return L * 100 / 255, A - 128, B - 128
    return sum((x - y) ** 2 for x, y in zip(lab(a), lab(b))) ** 0.5


def _horizon(output: Image.Image, mask: Image.Image) -> tuple[int, float]:
    """The row beside the product where lightness changes most from above to below, and that change
    (the floor line: 0 if there is none). Searched in the product's lower two thirds."""
    bbox = mask.getbbox()
    grey = output.convert("L")
    strips = [(x0, x1) for x0, x1 in [(0, max(1, bbox[0] - 8)), (min(output.width - 1, bbox[2] + 8), output.width)]
              if x1 - x0 >= 8]
    best = (bbox[3], 0.0)
    for y in range(bbox[1] + (bbox[3] - bbox[1]) // 3, min(bbox[3], output.height - 14)):
        for x0, x1 in strips:
            above = ImageStat.Stat(grey.crop((x0, y - 14, x1, y - 6))).mean[0]
            below = ImageStat.Stat(grey.crop((x0, y + 6, x1, y + 14))).mean[0]
            if abs(above - below) > best[1]:
                best = (y, abs(above - below))
    return best


def _contrast(original: Image.Image, output: Image.Image, mask: Image.Image) -> float:
    """Colour difference between the product and the wall around it (a band above the horizon), in the output."""
    band = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(31)), mask.filter(ImageFilter.MaxFilter(9)))
    band.paste(0, (0, _horizon(output, mask)[0] - 4, band.width, band.height))
    product = tuple(round(v) for v in ImageStat.Stat(original, mask).mean)
    around = tuple(round(v) for v in ImageStat.Stat(output, band).mean)
    return _delta_e(product, around)


def _floor_step(output: Image.Image, mask: Image.Image) -> float:
    """How much lightness changes across the horizon, beside the product (0: no floor line)."""
    return _horizon(output, mask)[1]


def quickstart() -> list[tuple[str, bytes, str]]:
    _, manifest, _ = validate(REPO / "configs" / "catalog.yaml", env={})
    return [(item.id, item.image_path.read_bytes(), item.prompt) for item in manifest.items]


@pytest.mark.parametrize("item_id,image,prompt", quickstart(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 20 else "")
def test_quickstart_products_stand_out_on_a_visible_floor(item_id, image, prompt):
    original, output, mask = _rendered(image, prompt)
    assert _contrast(original, output, mask) >= 24, item_id  # before: 10-17 for mug, camera, sneaker, watch
    assert _floor_step(output, mask) >= 15, item_id            # before: 1 for the camera, 5 for the watch


def _product(colour: tuple[int, int, int]) -> bytes:
    im = Image.new("RGB", (240, 240), "white")
    ImageDraw.Draw(im).rectangle([80, 50, 160, 190], fill=colour)
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name,prompt", [
    ("blue", "a blue mug against a blue wall"),    # the scene itself names the product's colour
    ("red", "a red sneaker"),                        # nothing but the product: all of it read as scene
    ("grey", "a grey camera on grey"),
    ("silver", "a silver kettle on a silver background"),
    ("black", "a black bag against black"),
])
def test_a_scene_like_the_product_is_moved_away_from_it(name, prompt):
    original, output, mask = _rendered(_product(COLOURS[name]), prompt)
    assert _contrast(original, output, mask) >= 24, name  # before: 3-14
    assert _floor_step(output, mask) >= 15, name            # before: 0-3


def test_contrasting_keeps_a_scene_that_already_stands_apart():
    scene = parse_prompt("on a teal wall")
    assert scenes.contrasting(scene, COLOURS["white"]) == scene
    moved = scenes.contrasting(scene, COLOURS["teal"])
    assert _delta_e(moved.wall_colour, COLOURS["teal"]) >= MIN_CONTRAST
