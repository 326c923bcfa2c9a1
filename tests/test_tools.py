"""The registry of LightX tools: endpoints, fields and their checks, limits, request bodies."""
from __future__ import annotations

import dataclasses
import re

import pytest

from pipeline.lightx.tools import INPUT_FIELD, TOOLS, Kind, field_problems, is_colour, request_body


def test_the_registry_covers_the_tools_lightx_documents():
    assert {name: (t.submit_path, t.status_path) for name, t in TOOLS.items()} == {
        "background-generator": ("v1/background-generator", "v1/order-status"),
        "product-photoshoot": ("v1/product-photoshoot", "v1/order-status"),
        "remove-background": ("v1/remove-background", "v1/order-status"),
        "upscale": ("v2/upscale/", "v2/order-status"),
        "expand-photo": ("v1/expand-photo", "v1/order-status"),
    }
    assert all(t.credits == 1 for t in TOOLS.values())
    assert [name for name, t in TOOLS.items() if t.masked] == ["remove-background"]


def test_tools_are_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TOOLS["upscale"].credits = 2  # type: ignore[misc]


@pytest.mark.parametrize("tool,values,body", [
    ("background-generator", {"prompt": "on marble"}, {"textPrompt": "on marble"}),
    ("product-photoshoot", {}, {}),
    ("product-photoshoot", {"style_image": "https://cdn/s.jpg", "prompt": "x"},
     {"styleImageUrl": "https://cdn/s.jpg", "textPrompt": "x"}),
    ("remove-background", {}, {}),
    ("remove-background", {"background": "#FFFFFF"}, {"background": "#FFFFFF"}),
    ("upscale", {"quality": 2}, {"quality": 2}),
    ("upscale", {"quality": "4"}, {"quality": 4}),  # a filled template
    ("expand-photo", {"left_padding": 10, "top_padding": "5"},
     {"leftPadding": 10, "rightPadding": 0, "topPadding": 5, "bottomPadding": 0}),
])
def test_request_bodies(tool, values, body):
    assert request_body(TOOLS[tool], "https://cdn/in.jpg", values) == {INPUT_FIELD: "https://cdn/in.jpg", **body}


@pytest.mark.parametrize("tool,values,message", [
    ("upscale", {"quality": 3}, "must be 2 or 4 (got 3)"),
    ("upscale", {"quality": True}, "must be a whole number"),
    ("upscale", {}, "upscale needs quality"),
    ("expand-photo", {"left_padding": -1}, "must be at least 0 (got -1)"),
    ("background-generator", {"prompt": "x" * 501}, "must be at most 500 characters"),
    ("background-generator", {"prompt": "  "}, "is empty"),
    ("remove-background", {"colour": "red"}, "has no field 'colour'"),
])
def test_bad_values_are_refused(tool, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        request_body(TOOLS[tool], "https://cdn/in.jpg", values)


def test_field_problems_name_the_field_and_suggest():
    assert field_problems("upscal", {}) == [(None, "unknown tool 'upscal' (did you mean 'upscale'?)")]
    assert field_problems("upscale", {"qualty": 2}) == [
        ("qualty", "unknown field for upscale (did you mean 'quality'?)"),
        ("quality", "is required by upscale")]
    assert field_problems("remove-background", {"background": "white"}) == []


@pytest.mark.parametrize("size,quality,ok", [
    ((1024, 1024), 4, True), ((1025, 10), 4, False), ((1025, 10), 2, True),
    ((2048, 2048), 2, True), ((10, 2049), 2, False),
])
def test_upscale_limits(size, quality, ok):
    problem = TOOLS["upscale"].limit_problem({"quality": quality}, size)
    assert (problem is None) is ok
    if not ok:
        assert f"{size[0]}x{size[1]} px" in problem


def test_output_sizes():
    assert TOOLS["upscale"].output_size({"quality": 4}, (300, 200)) == (1200, 800)
    assert TOOLS["expand-photo"].output_size({"left_padding": 5, "bottom_padding": 7}, (300, 200)) == (305, 207)
    assert TOOLS["background-generator"].output_size({}, (300, 200)) == (300, 200)


@pytest.mark.parametrize("value,colour", [
    ("#FFFFFF", True), ("#fff", True), ("white", True), ("Transparent", True),
    ("#FFFFF", False), ("images/wall.jpg", False), ("https://x/y.png", False)])
def test_colours_and_images(value, colour):
    assert is_colour(value) is colour
    assert TOOLS["remove-background"].field("background").is_image(value) is not colour


def test_image_fields_are_marked():
    images = {(t.name, f.name) for t in TOOLS.values() for f in t.fields if f.kind is Kind.IMAGE}
    assert images == {("product-photoshoot", "style_image")}


@pytest.mark.parametrize("values,content_type", [
    ({}, "image/png"), ({"background": "transparent"}, "image/png"), ({"background": "#FFFFFF"}, "image/jpeg"),
    ({"background": "walls/brick.jpg"}, "image/jpeg")])
def test_output_types(values, content_type):
    assert TOOLS["remove-background"].output_type(values) == content_type
    assert TOOLS["upscale"].output_type({"quality": 2}) == "image/jpeg"
