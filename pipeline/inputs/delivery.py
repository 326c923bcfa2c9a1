"""What every delivered picture carries and which renditions are made of it: `output.disclosure`, `output.renditions`.

    >>> disclosure_of(cfg).source_type, [r.name for r in renditions_of(cfg)]
    ('trainedAlgorithmicMedia', ['square', 'web'])

The config keeps both as the plain mappings the schema checked (so its defaults and the dataclass
defaults stay comparable); these frozen views are what the rest of the code reads.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import ImageColor

RunConfig = Any  # inputs.settings.RunConfig, which holds these settings: not imported, it imports this

DEFAULT_DISCLOSURE = {"source_type": "trainedAlgorithmicMedia", "prompt": False}
OFF = "off"
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
# Folders under output.dir that are not free for a rendition, and names whose column exists already.
RESERVED = {"thumbs", "output", "image"}


@dataclass(frozen=True)
class DisclosureSettings:
    source_type: str = "trainedAlgorithmicMedia"   # or compositeWithTrainedAlgorithmicMedia, or off
    prompt: bool = False

    @property
    def off(self) -> bool:
        return self.source_type == OFF


@dataclass(frozen=True)
class Rendition:
    name: str
    format: str                 # jpeg | png | webp
    quality: int = 85
    size: int | None = None     # a square canvas of size x size
    fit: str = "pad"            # with size: pad | cover
    background: str = "#FFFFFF"
    max_side: int | None = None

    @property
    def key(self) -> str:
        """Everything that decides the rendition's pixels and encoding."""
        return repr((self.format, self.quality, self.size, self.fit if self.size else None,
                     self.background if self.size and self.fit == "pad" else None, self.max_side))

    def path_of(self, output_name: str) -> str:
        """`square/shoes/sku-1.webp` for the output `shoes/sku-1.jpg`: relative to output.dir."""
        stem = posixpath.splitext(output_name)[0]
        return f"{self.name}/{stem}{EXTENSIONS[self.format]}"


def disclosure_of(cfg: RunConfig) -> DisclosureSettings:
    given = getattr(cfg.output, "disclosure", None) or {}
    return DisclosureSettings(**{**DEFAULT_DISCLOSURE, **given})


def renditions_of(cfg: RunConfig) -> tuple[Rendition, ...]:
    return _renditions(tuple(tuple(sorted(r.items())) for r in getattr(cfg.output, "renditions", None) or ()))


@lru_cache(maxsize=32)
def _renditions(given: tuple) -> tuple[Rendition, ...]:
    return tuple(Rendition(**dict(items)) for items in given)


def rendition_location(cfg: RunConfig, output_name: str, rendition: str) -> str:
    """Where an output's rendition is: its local path, or its URL when output.dir is a storage URL.

    The store import files use it for `store.rendition: NAME`."""
    found = next((r for r in renditions_of(cfg) if r.name == rendition), None)
    if found is None:
        raise KeyError(f"no rendition named {rendition!r} in output.renditions")
    relative = found.path_of(output_name)
    return f"{cfg.output_url}/{relative}" if cfg.output_url else str(cfg.output.dir / relative)


def problems(data: dict) -> list[str]:
    """What the schema cannot say about output.renditions: one of size or max_side, unique names."""
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    given = output.get("renditions")
    store = data.get("store") if isinstance(data.get("store"), dict) else {}
    picked = store.get("rendition")
    names = {r.get("name") for r in given if isinstance(r, dict)} if isinstance(given, list) else set()
    found: list[str] = []
    if isinstance(picked, str) and picked not in names:
        found.append(f"store.rendition: {picked!r} is not one of output.renditions"
                     + (f" ({', '.join(sorted(map(str, names)))})" if names else " (there are none)"))
    if not isinstance(given, list):
        return found
    seen: set[str] = set()
    for k, r in enumerate(given):
        if not isinstance(r, dict):
            continue
        where = f"output.renditions[{k}]" + (f" ({r['name']})" if isinstance(r.get("name"), str) else "")
        name = r.get("name")
        if isinstance(name, str):
            if name.lower() in seen:
                found.append(f"{where}: the name is used twice; each rendition needs its own folder")
            seen.add(name.lower())
            if name.lower() in RESERVED:
                found.append(f"{where}: {name!r} is reserved; choose another name")
        if ("size" in r) == ("max_side" in r):
            found.append(f"{where}: give either size (a square canvas) or max_side, not "
                         f"{'both' if 'size' in r else 'neither'}")
        if "size" not in r and ("fit" in r or "background" in r):
            found.append(f"{where}: fit and background go with size")
        background = r.get("background")
        if isinstance(background, str):
            if background.lower() == "transparent":
                if r.get("format") == "jpeg":
                    found.append(f"{where}: background transparent needs format png or webp; a JPEG has no alpha")
            elif not _is_colour(background):
                found.append(f"{where}: background {background!r} is not a colour (#RRGGBB or a CSS name)")
    return found


def warnings(cfg: RunConfig) -> list[str]:
    """What `pipeline validate` warns about: a disclosure turned off."""
    if disclosure_of(cfg).off:
        return ["output.disclosure.source_type is off: delivered pictures carry no AI-disclosure metadata; "
                "Google Merchant Center requires IPTC DigitalSourceType trainedAlgorithmicMedia on "
                "AI-generated pictures, and the EU AI Act (Art. 50) asks for a machine-readable mark"]
    return []


def _is_colour(text: str) -> bool:
    try:
        ImageColor.getrgb(text)
    except ValueError:
        return False
    return True
