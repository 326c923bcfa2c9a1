"""LightX's tools as data: submit endpoint, body fields, status route, input limits, price.

    >>> tool = TOOLS["upscale"]
    >>> tool.submit_path, tool.status_path
    ('v2/upscale/', 'v2/order-status')
    >>> request_body(tool, "https://cdn/a.jpg", {"quality": 2})
    {'imageUrl': 'https://cdn/a.jpg', 'quality': 2}

Every tool takes the step's input picture as ``imageUrl`` (uploaded first: LightX refuses external
URLs) and answers a submit with an orderId that is polled at ``status_path``. Adding a tool is one
entry in ``TOOLS`` plus a handler in ``pipeline/sandbox/handlers.py``; nothing else names tools.
Fields are named in snake_case in the config (``style_image``) and as LightX spells them in the
body (``styleImageUrl``).
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PIL import ImageColor

INPUT_FIELD = "imageUrl"
TRANSPARENT = "transparent"
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

Size = tuple[int, int]


class Kind(StrEnum):
    TEXT = "text"                        # free text, e.g. a prompt
    INT = "integer"
    COLOUR_OR_IMAGE = "colour or image"  # a colour name, #hex, "transparent", or a picture
    IMAGE = "image"                      # a picture: a local path or http(s) URL, uploaded first


@dataclass(frozen=True)
class Field:
    name: str              # as the config spells it
    api: str               # as the request body spells it
    kind: Kind
    description: str
    required: bool = False
    default: Any = None    # sent when the config leaves the field out; None: not sent
    choices: tuple[Any, ...] = ()
    minimum: int | None = None
    max_length: int | None = None

    def check(self, value: Any) -> Any:
        """The value as it is sent (an int for INT fields); ValueError says what is wrong with it."""
        if self.kind is Kind.INT:
            if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"must be a whole number (got {value!r})")
            if self.choices and value not in self.choices:
                raise ValueError(f"must be {' or '.join(map(str, self.choices))} (got {value})")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"must be at least {self.minimum} (got {value})")
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be text (got {value!r})")
        if not value.strip():
            raise ValueError("is empty")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        return value

    def is_image(self, value: Any) -> bool:
        """Whether this value is a picture that must be uploaded before the submit."""
        return self.kind is Kind.IMAGE or (self.kind is Kind.COLOUR_OR_IMAGE and not is_colour(value))


@dataclass(frozen=True)
class SideLimit:
    """Inputs with a side over ``max_side`` px are refused, when ``field`` has one of ``values``."""
    max_side: int
    field: str | None = None
    values: tuple[Any, ...] = ()

    def applies(self, values: Mapping[str, Any]) -> bool:
        return self.field is None or values.get(self.field) in self.values


def _same(values: Mapping[str, Any], size: Size) -> Size:
    return size


@dataclass(frozen=True)
class Tool:
    name: str
    submit_path: str       # relative to the API base URL
    status_path: str
    fields: tuple[Field, ...]
    description: str
    limits: tuple[SideLimit, ...] = ()
    credits: int = 1       # per completed order; failed orders are free
    # The output's size from the input's. LightX documents none of them; see each entry.
    output_size: Callable[[Mapping[str, Any], Size], Size] = _same
    output_type: Callable[[Mapping[str, Any]], str] = lambda values: "image/jpeg"
    masked: bool = False   # a finished order's answer also carries ``mask``, the cut-out's mask URL

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def limit_problem(self, values: Mapping[str, Any], size: Size) -> str | None:
        """Why an input of ``size`` cannot go through this tool with these values, or None."""
        for limit in self.limits:
            if max(size) > limit.max_side and limit.applies(values):
                when = f" at {limit.field} {values[limit.field]}" if limit.field else ""
                return (f"an input of {size[0]}x{size[1]} px is over {self.name}'s limit of "
                        f"{limit.max_side} px a side{when}")
        return None


def is_colour(value: Any) -> bool:
    """``transparent``, ``#RGB``/``#RRGGBB`` or a CSS colour name, as remove-background takes them."""
    return isinstance(value, str) and (value.lower() == TRANSPARENT or _HEX.fullmatch(value) is not None
                                       or value.lower() in ImageColor.colormap)


_PROMPT = "text prompt: a template over manifest columns, e.g. \"{title} on a marble counter\""

# Output sizes: upscale and expand-photo as their fields say; the others keep the input's size, as the
# sandbox does. LightX documents none of this, so a validator's size checks built on it are estimates.
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("background-generator", "v1/background-generator", "v1/order-status",
         (Field("prompt", "textPrompt", Kind.TEXT, _PROMPT, required=True, max_length=500),),
         "A new AI background behind the product, described by a prompt."),
    Tool("product-photoshoot", "v1/product-photoshoot", "v1/order-status",
         (Field("style_image", "styleImageUrl", Kind.IMAGE,
                "reference picture whose style the scene takes: a local path (relative to the manifest, "
                "inside its bucket when the manifest is in one), a storage URL such as s3://cat/style.jpg, "
                "or a manifest column as \"{style_image}\""),
          Field("prompt", "textPrompt", Kind.TEXT, _PROMPT, max_length=500)),
         "The product in a photoshoot scene, styled after a reference picture and/or a prompt."),
    Tool("remove-background", "v1/remove-background", "v1/order-status",
         (Field("background", "background", Kind.COLOUR_OR_IMAGE,
                "what replaces the background: a colour name, a hex code such as \"#FFFFFF\", "
                "\"transparent\" (LightX's default; the output is then a PNG) or a picture"),),
         "The product cut out, on a colour or picture; the answer also carries a mask.",
         output_type=lambda values: "image/png" if str(values.get("background") or TRANSPARENT).lower()
         == TRANSPARENT else "image/jpeg", masked=True),
    Tool("upscale", "v2/upscale/", "v2/order-status",
         (Field("quality", "quality", Kind.INT, "enlargement factor: 2 or 4", required=True, choices=(2, 4)),),
         "The picture enlarged 2x or 4x.",
         limits=(SideLimit(2048), SideLimit(1024, "quality", (4,))),
         output_size=lambda values, size: (size[0] * values["quality"], size[1] * values["quality"])),
    Tool("expand-photo", "v1/expand-photo", "v1/order-status",
         tuple(Field(f"{side}_padding", f"{side}Padding", Kind.INT, f"pixels added on the {side}",
                     default=0, minimum=0) for side in ("left", "right", "top", "bottom")),
         "The canvas expanded by the given padding, the new area filled in.",
         output_size=lambda values, size: (
             size[0] + values.get("left_padding", 0) + values.get("right_padding", 0),
             size[1] + values.get("top_padding", 0) + values.get("bottom_padding", 0))),
)}

STATUS_PATHS = frozenset(tool.status_path for tool in TOOLS.values())


def field_problems(tool_name: str, given: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(field or None, problem) for an unknown tool, unknown fields and missing required ones."""
    tool = TOOLS.get(tool_name)
    if tool is None:
        close = difflib.get_close_matches(str(tool_name), list(TOOLS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known tools: {', '.join(TOOLS)}"
        return [(None, f"unknown tool {tool_name!r} ({hint})")]
    names = [f.name for f in tool.fields]
    problems: list[tuple[str | None, str]] = []
    for name in given:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"{tool.name} takes {', '.join(names)}" if names else f"{tool.name} takes no fields")
            problems.append((name, f"unknown field for {tool.name} ({hint})"))
    problems += [(f.name, f"is required by {tool.name}") for f in tool.fields
                 if f.required and f.name not in given]
    return problems


def with_defaults(tool: Tool, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` plus the defaults of the fields they leave out."""
    return {**{f.name: f.default for f in tool.fields if f.default is not None}, **values}


def request_body(tool: Tool, image_url: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The submit body from resolved values: checked, defaults filled, image fields already uploaded URLs."""
    body: dict[str, Any] = {INPUT_FIELD: image_url}
    for name, value in with_defaults(tool, values).items():
        field = tool.field(name)
        if field is None:
            raise ValueError(f"{tool.name} has no field {name!r}")
        body[field.api] = field.check(value)
    missing = [f.name for f in tool.fields if f.required and f.api not in body]
    if missing:
        raise ValueError(f"{tool.name} needs {', '.join(missing)}")
    return body
