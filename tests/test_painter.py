"""The sandbox's pictures, the first a newcomer sees: scene colours from the scene's words, the product
standing out from what is painted behind it, and a floor line under it."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from pipeline.inputs.validate import validate
from pipeline.sandbox import canvas, painter, scene as scenes
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
    """(input, output, product mask) at the input's size."""
    original = Image.open(io.BytesIO(image)).convert("RGB")
    output = Image.open(io.BytesIO(painter.render(image, prompt))).convert("RGB")
    mask = painter.product_mask(original.convert("RGBA")).point(lambda v: 255 if v > 127 else 0)
    return original, output, mask


def _contrast(original: Image.Image, output: Image.Image, mask: Image.Image) -> float:
    """Colour difference between the product and the wall around it (a band above the horizon), in the output."""
    band = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(31)), mask.filter(ImageFilter.MaxFilter(9)))
    band.paste(0, (0, canvas.horizon_for(mask.getbbox(), mask.height) - 4, band.width, band.height))
    product = tuple(round(v) for v in ImageStat.Stat(original, mask).mean)
    around = tuple(round(v) for v in ImageStat.Stat(output, band).mean)
    return scenes._delta_e(product, around)


def _floor_step(output: Image.Image, mask: Image.Image) -> float:
    """How much lightness changes across the horizon, beside the product (0: no floor line)."""
    bbox = mask.getbbox()
    horizon = canvas.horizon_for(bbox, output.height)
    grey = output.convert("L")
    strips = [(0, max(1, bbox[0] - 8)), (min(output.width - 1, bbox[2] + 8), output.width)]
    steps = []
    for x0, x1 in strips:
        if x1 - x0 < 8:
            continue
        above = ImageStat.Stat(grey.crop((x0, horizon - 14, x1, horizon - 6))).mean[0]
        below = ImageStat.Stat(grey.crop((x0, horizon + 6, x1, horizon + 14))).mean[0]
        steps.append(abs(above - below))
    return max(steps)


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
    assert scenes._delta_e(moved.wall_colour, COLOURS["teal"]) >= MIN_CONTRAST
