"""Prompt -> Scene: colour and mood words pick a palette, material and scene words a texture.

    scene = parse_prompt("a blue mug on a white marble counter, soft morning light")  # reads from "on ..."
    scene = contrasting(scene, product=(55, 100, 175))   # a wall too like the product moves away from it
    background = canvas.paint((1000, 1000), scene, random.Random(1), horizon_y=620)   # sandbox/canvas.py

Only the scene part of a prompt is read: from its first "on", "against", "beside", ... (else "in",
"at", "by"), since the words before describe the product ("a blue mug on a white counter" is no blue
wall). A prompt without such a word is all scene.

"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace


RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (178, 40, 46), "crimson": (150, 20, 40), "burgundy": (110, 25, 40), "coral": (240, 128, 110),
    "orange": (232, 130, 50), "peach": (250, 195, 160), "yellow": (240, 205, 80), "gold": (212, 170, 80),
    "golden": (218, 168, 70), "green": (70, 135, 80), "sage": (160, 180, 150), "olive": (120, 125, 60),
    "mint": (175, 225, 200), "emerald": (30, 120, 80), "teal": (30, 128, 130), "turquoise": (60, 190, 190),
    "blue": (55, 100, 175), "navy": (30, 42, 85), "sky": (150, 195, 235), "purple": (115, 70, 150),
    "lavender": (195, 175, 225), "violet": (130, 80, 190), "pink": (238, 165, 185), "rose": (225, 140, 155),
    "white": (242, 241, 238), "ivory": (245, 240, 225), "cream": (243, 233, 210), "beige": (222, 204, 175),
    "tan": (200, 170, 130), "brown": (120, 80, 52), "chocolate": (80, 50, 35), "grey": (145, 145, 150),
    "gray": (145, 145, 150), "silver": (190, 192, 196), "charcoal": (55, 57, 62), "black": (24, 24, 27),
}

# material word -> (texture, default dark tone, default light tone, wall colour)
MATERIALS: dict[str, tuple[str, RGB, RGB, RGB]] = {
    "marble": ("marble", (110, 110, 118), (238, 236, 233), (222, 219, 214)),
    "wood": ("wood", (92, 58, 34), (176, 126, 82), (226, 212, 192)),
    "walnut": ("wood", (60, 38, 24), (128, 88, 58), (214, 200, 182)),
    "oak": ("wood", (130, 92, 55), (204, 164, 114), (230, 218, 200)),
    "concrete": ("concrete", (112, 112, 110), (186, 185, 180), (200, 199, 195)),
    "stone": ("concrete", (100, 98, 94), (176, 172, 165), (205, 200, 192)),
    "slate": ("concrete", (45, 48, 52), (100, 104, 110), (150, 152, 156)),
    "linen": ("linen", (186, 176, 158), (236, 229, 214), (236, 230, 220)),
    "fabric": ("linen", (170, 165, 158), (226, 222, 215), (230, 228, 222)),
    "velvet": ("linen", (70, 30, 50), (150, 80, 110), (120, 70, 90)),
    "sand": ("sand", (196, 168, 122), (242, 222, 182), (190, 220, 240)),
    "grass": ("grass", (38, 88, 30), (128, 184, 72), (110, 150, 95)),
    "water": ("water", (30, 90, 140), (140, 200, 230), (170, 210, 235)),
    "snow": ("snow", (200, 210, 225), (252, 252, 255), (210, 222, 236)),
    "paper": ("plain", (225, 222, 215), (248, 246, 240), (238, 236, 230)),
}
SYNONYMS = {
    "wooden": "wood", "timber": "wood", "table": "wood", "desk": "wood", "shelf": "wood",
    "cement": "concrete", "granite": "stone", "rock": "stone", "pebbles": "stone",
    "cloth": "fabric", "cotton": "fabric", "silk": "fabric", "sheets": "linen", "bed": "linen",
    "beach": "sand", "desert": "sand", "dune": "sand", "dunes": "sand",
    "lawn": "grass", "garden": "grass", "meadow": "grass", "park": "grass", "moss": "grass",
    "pool": "water", "ocean": "water", "sea": "water", "lake": "water", "ice": "snow", "winter": "snow",
    "counter": "marble", "countertop": "marble", "bathroom": "marble", "gray": "grey",
}
# words that say which "wall" to paint behind the surface
WALLS = {
    "kitchen": "tiles", "tiles": "tiles", "tiled": "tiles", "bathroom": "tiles", "brick": "brick",
    "bricks": "brick", "garden": "foliage", "forest": "foliage", "jungle": "foliage", "tropical": "foliage",
    "leaves": "foliage", "plants": "foliage", "park": "foliage", "meadow": "foliage", "grass": "foliage",
    "beach": "sky", "ocean": "sky", "sea": "sky", "desert": "sky", "outdoor": "sky", "outdoors": "sky",
    "sky": "sky", "lake": "sky", "sunset": "sunset", "sunrise": "sunset", "dusk": "sunset",
}
# the surface a scene implies when the prompt names none: "in a modern kitchen" -> a marble counter
WALL_SURFACES = {"tiles": "marble", "brick": "wood", "foliage": "grass", "sky": "sand", "sunset": "wood"}
# textures whose stripes should run from front to back rather than across
ALONG_DEPTH = {"wood"}
# weak hints that only apply when no other material word is present
WEAK = {"table", "desk", "shelf", "counter", "countertop", "bed", "bathroom", "garden", "park"}
# Where the scene starts; "over-ear headphones" or "on-trend" are no such place (a word must follow).
SCENE_STARTS = re.compile(r"(?<![\w-])(?:on|onto|upon|atop|against|over|under|beneath|beside|behind|among|amid|"
                          r"near|across|in front of|next to|surrounded by)(?=\s)", re.I)
# weaker: "a succulent in a terracotta pot on a windowsill" starts its scene at "on"
SCENE_STARTS_WEAK = re.compile(r"(?<![\w-])(?:in|inside|within|at|by)(?=\s)", re.I)
MIN_CONTRAST = 36.0  # least CIE76 colour difference between the product and what is painted behind it
MIN_FLOOR_STEP = 24  # least step in grey level (0-255) where the wall meets the floor


@dataclass(frozen=True)
class Scene:
    """What to paint: a wall (or a seamless studio sweep) and optionally a textured surface."""

    wall: str = "gradient"             # gradient | tiles | brick | foliage | sky | sunset
    wall_colour: RGB = (214, 214, 218)
    texture: str | None = None         # marble | wood | concrete | linen | sand | grass | water | snow | plain
    dark: RGB = (120, 120, 120)
    light: RGB = (230, 230, 230)
    glow: RGB | None = None            # colour of a soft light source
    glow_at: tuple[float, float] = (0.25, 0.15)
    warmth: float = 0.0                # -1 cool .. +1 warm
    brightness: float = 1.0


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def luma(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def scene_text(prompt: str) -> str:
    """The part of a prompt that describes the scene, not the product (see the module docstring)."""
    start = SCENE_STARTS.search(prompt) or SCENE_STARTS_WEAK.search(prompt)
    return prompt[start.start():] if start else prompt


def parse_prompt(prompt: str) -> Scene:
    """Read colour, mood, material and scene words from a prompt's scene part; unknown words are ignored."""
    raw = re.findall(r"[a-z]+", scene_text(prompt).lower())
    words = [SYNONYMS.get(w, w) if w not in MATERIALS else w for w in raw]
    scene = Scene()
    strong = [i for i, w in enumerate(raw) if w not in WEAK and words[i] in MATERIALS]
    weak = [i for i, w in enumerate(raw) if w in WEAK and words[i] in MATERIALS]
    material_at = (strong or weak or [None])[0]
    colours = [i for i, w in enumerate(raw) if w in COLOURS]

    if material_at is not None:
        texture, dark, light, wall_colour = MATERIALS[words[material_at]]
        scene = replace(scene, texture=texture, dark=dark, light=light, wall_colour=wall_colour)
        tint = raw[material_at - 1] if material_at > 0 else None
        if tint in COLOURS:  # "black marble", "blue velvet": the colour belongs to the surface
            c = COLOURS[tint]
            if luma(c) < 70 and texture == "marble":  # dark stone, light veins
                scene = replace(scene, dark=mix(c, (255, 255, 255), 0.7), light=mix(c, (0, 0, 0), 0.1),
                                wall_colour=(70, 70, 74))
            elif luma(c) < 70:
                scene = replace(scene, dark=mix(c, (0, 0, 0), 0.3), light=mix(c, (255, 255, 255), 0.35))
            else:
                scene = replace(scene, dark=mix(c, (0, 0, 0), 0.45), light=mix(c, (255, 255, 255), 0.3))
            colours = [i for i in colours if i != material_at - 1]
    if colours:
        scene = replace(scene, wall_colour=COLOURS[raw[colours[0]]])
        if len(colours) > 1 and scene.texture is None:
            scene = replace(scene, light=COLOURS[raw[colours[1]]])
    for w in raw:
        if w in WALLS:
            scene = replace(scene, wall=WALLS[w])
            break
    if scene.texture is None and scene.wall in WALL_SURFACES:
        texture, dark, light, _ = MATERIALS[WALL_SURFACES[scene.wall]]
        scene = replace(scene, texture=texture, dark=dark, light=light)
    return _moods(scene, set(raw), bool(colours))


def contrasting(scene: Scene, product: RGB) -> Scene:
    """``scene`` with its wall and surface moved in lightness away from the product's colour where they
    are too alike (a blue mug on a blue wall), so the product stands out; their hue is kept."""
    lit = scene.brightness  # compared as painted: "dark", "moody" dim everything
    if scene.wall in PAINTED_WALLS and _delta_e(_lit(scene.wall_colour, lit), product) < MIN_CONTRAST:
        scene = replace(scene, wall_colour=_away(scene.wall_colour, product, lit))
    mid = mix(scene.dark, scene.light, 0.5)
    if scene.texture is not None and _delta_e(_lit(mid, lit), product) < MIN_CONTRAST:
        shift = tuple(t - m for t, m in zip(_away(mid, product, lit), mid))
        scene = replace(scene, dark=_shifted(scene.dark, shift), light=_shifted(scene.light, shift))
    return scene


# walls painted in scene.wall_colour (sky, sunset and foliage have colours of their own)
PAINTED_WALLS = {"gradient", "tiles", "brick"}


def _away(colour: RGB, product: RGB, lit: float = 1.0) -> RGB:
    """The nearest tint or shade of ``colour`` that contrasts with the product: darker if it is
    already clearly the darker of the two ("dark slate" stays dark), lighter if clearly the lighter;
    as light as each other, lighter for a dark product; the other way if that fails."""
    ways = [(0, 0, 0), (255, 255, 255)]
    here, there = luma(_lit(colour, lit)), luma(product)
    if here > there + 10 or (abs(here - there) <= 10 and there < 128):  # alike: away from the product's side
        ways.reverse()
    for toward in ways:
        for step in range(1, 11):
            moved = mix(colour, toward, step / 10)
            if _delta_e(_lit(moved, lit), product) >= MIN_CONTRAST:
                return moved
    return ways[0]


def _lit(colour: RGB, brightness: float) -> RGB:
    return tuple(min(255, int(c * brightness)) for c in colour)  # type: ignore[return-value]


def _shifted(colour: RGB, shift: tuple[int, ...]) -> RGB:
    return tuple(min(255, max(0, c + d)) for c, d in zip(colour, shift))  # type: ignore[return-value]


def _delta_e(a: RGB, b: RGB) -> float:
    """CIE76 colour difference: about 2 is just noticeable, over 30 is clearly another colour."""
    return sum((x - y) ** 2 for x, y in zip(_lab(a), _lab(b))) ** 0.5


def _lab(rgb: RGB) -> tuple[float, float, float]:
    """sRGB (D65) to CIE L*a*b*."""
    lin = [((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in rgb]
    xyz = [sum(m * v for m, v in zip(row, lin)) / white for row, white in zip(_SRGB_TO_XYZ, (0.95047, 1.0, 1.08883))]
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


_SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))


def _moods(scene: Scene, words: set[str], coloured: bool) -> Scene:
    if "pastel" in words or "pastels" in words:
        base = scene.wall_colour if coloured else (236, 190, 205)
        scene = replace(scene, wall_colour=mix(base, (255, 255, 255), 0.55))
    if words & {"sunset", "sunrise", "dusk", "golden", "warm", "cozy", "cosy"}:
        scene = replace(scene, warmth=0.6 if words & {"sunset", "dusk"} else 0.35,
                        glow=(255, 196, 120), glow_at=(0.7, 0.55))
    if words & {"morning", "daylight", "sunlight", "sunny", "window", "natural"}:
        scene = replace(scene, glow=(255, 246, 226), glow_at=(0.2, 0.1))
    if words & {"cool", "cold", "icy", "fresh"}:
        scene = replace(scene, warmth=-0.35)
    if words & {"dark", "moody", "night", "dramatic", "noir"}:
        scene = replace(scene, brightness=0.6)
    if words & {"bright", "airy", "light", "clean", "minimal", "minimalist"}:
        scene = replace(scene, brightness=min(1.15, scene.brightness * 1.1))
    if "soft" in words and scene.glow is None:
        scene = replace(scene, glow=(255, 252, 245), glow_at=(0.3, 0.15))
    if "neon" in words:
        scene = replace(scene, wall_colour=(120, 40, 170), glow=(40, 220, 230), glow_at=(0.8, 0.3))
    return scene


# painting
