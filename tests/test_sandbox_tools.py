"""The sandbox serves every registered LightX tool: its route, checks, picture, status route and ledger."""
from __future__ import annotations

import asyncio
import hashlib
import io

import pytest
from PIL import Image, ImageDraw

from helpers import Lx, jpeg_bytes
from pipeline.lightx.tools import TOOLS, request_body
from pipeline.sandbox.handlers import HANDLERS


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def picture(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


async def order(lx: Lx, tool: str, data: bytes, **values) -> tuple[str, dict]:
    """Upload ``data``, submit it to ``tool`` with ``values`` (image values given as bytes are uploaded too)."""
    for name, value in values.items():
        if isinstance(value, bytes):
            values[name] = await lx.upload(value, "image/png" if value.startswith(b"\x89PNG") else "image/jpeg")
    body = request_body(TOOLS[tool], await lx.upload(data), values)
    status, answer = await lx.api("/" + TOOLS[tool].submit_path, body)
    assert status == 200 and answer["statusCode"] == 2000, answer
    return answer["body"]["orderId"], body


async def finished(lx: Lx, tool: str, order_id: str) -> dict:
    for _ in range(500):
        status, answer = await lx.api("/" + TOOLS[tool].status_path, {"orderId": order_id})
        assert status == 200 and answer["statusCode"] == 2000, answer
        if answer["body"]["status"] != "init":
            return answer["body"]
        await asyncio.sleep(0.01)
    raise AssertionError("order never finished")


async def output(lx: Lx, tool: str, data: bytes, **values) -> tuple[bytes, dict]:
    order_id, _ = await order(lx, tool, data, **values)
    body = await finished(lx, tool, order_id)
    assert body["status"] == "active"
    status, out, _ = await lx.get(body["output"])
    assert status == 200
    return out, body


def test_every_registered_tool_has_a_handler():
    assert set(HANDLERS) == set(TOOLS)


async def test_remove_background_puts_the_cut_out_on_the_colour(lx):
    data = jpeg_bytes((120, 90))  # a red box on white
    out, body = await output(lx, "remove-background", data, background="#0000FF")
    img = picture(out).convert("RGB")
    assert img.size == (120, 90)
    assert img.getpixel((2, 2))[2] > 200 and img.getpixel((2, 2))[0] < 60   # the background is blue
    assert img.getpixel((60, 50))[0] > 150 and img.getpixel((60, 50))[2] < 90  # the product is kept
    status, mask, content_type = await lx.get(body["mask"])
    assert (status, content_type, picture(mask).mode) == (200, "image/png", "L")


async def test_remove_background_is_transparent_by_default(lx):
    out, body = await output(lx, "remove-background", jpeg_bytes((120, 90)))
    assert body["output"].endswith(".png")
    img = picture(out)
    assert (img.format, img.mode) == ("PNG", "RGBA")
    assert img.getpixel((2, 2))[3] < 20 and img.getpixel((60, 50))[3] > 235


async def test_upscale_resamples_and_is_polled_at_v2(lx):
    data = jpeg_bytes((60, 40))
    for quality in (2, 4):
        out, _ = await output(lx, "upscale", data, quality=quality)
        assert picture(out).size == (60 * quality, 40 * quality)
    order_id, _ = await order(lx, "upscale", data, quality=2)
    status, answer = await lx.api("/v1/order-status", {"orderId": order_id})
    assert answer["statusCode"] == 4004  # an upscale order lives at v2/order-status only
    bg = await lx.order(data)
    status, answer = await lx.api("/v2/order-status", {"orderId": bg})
    assert answer["statusCode"] == 4004


@pytest.mark.parametrize("size,quality", [((2049, 16), 2), ((1025, 16), 4)])
async def test_upscale_refuses_inputs_over_its_limits_with_fail(lx, size, quality):
    url = await lx.upload(jpeg_bytes(size))
    status, answer = await lx.api("/v2/upscale/", {"imageUrl": url, "quality": quality})
    assert status == 200 and answer["status"] == "FAIL" and answer["statusCode"] == 4006
    assert f"{size[0]}x{size[1]} px" in answer["message"] and not lx.sb.ledger.orders


@pytest.mark.parametrize("body,message", [
    ({"quality": 3}, "quality must be 2 or 4"), ({}, "quality is required"), ({"quality": "x"}, "whole number")])
async def test_upscale_fields_are_checked_by_the_registry(lx, body, message):
    url = await lx.upload(jpeg_bytes())
    status, answer = await lx.api("/v2/upscale/", {"imageUrl": url, **body})
    assert (status, answer["statusCode"]) == (400, 4001) and message in answer["message"]


async def test_product_photoshoot_takes_its_colours_from_the_style_image(lx):
    style = Image.new("RGB", (40, 40), (20, 160, 40))
    ImageDraw.Draw(style).rectangle([0, 20, 40, 40], fill=(230, 200, 20))
    buffer = io.BytesIO()
    style.save(buffer, "PNG")
    out, _ = await output(lx, "product-photoshoot", jpeg_bytes((120, 90)), style_image=buffer.getvalue())
    img = picture(out).convert("RGB")
    corners = [img.getpixel((2, 2)), img.getpixel((117, 87))]
    assert {max(range(3), key=c.__getitem__) for c in corners} <= {0, 1}  # green-yellow, never blue or white
    assert all(min(c) < 120 for c in corners)
    (record,) = lx.sb.ledger.orders.values()
    assert record.images == {"styleImageUrl": sha(buffer.getvalue())}


async def test_product_photoshoot_refuses_an_external_style_image(lx):
    url = await lx.upload(jpeg_bytes())
    status, answer = await lx.api("/v1/product-photoshoot", {"imageUrl": url, "styleImageUrl": "https://x/s.jpg"})
    assert (status, answer["statusCode"]) == (400, 4002) and "styleImageUrl" in answer["message"]


async def test_expand_photo_fills_the_padding(lx):
    data = jpeg_bytes((60, 40))
    out, _ = await output(lx, "expand-photo", data, left_padding=10, top_padding=6, bottom_padding=4)
    img = picture(out).convert("RGB")
    assert img.size == (70, 50)
    assert all(v > 230 for v in img.getpixel((3, 3)))  # filled with the white border colour


async def test_the_ledger_follows_a_chain(lx):
    """An upscale's input is exactly the bytes the background generator output."""
    generated, _ = await output(lx, "background-generator", jpeg_bytes((80, 60)), prompt="on marble")
    await output(lx, "upscale", generated, quality=2)
    orders = {o.tool: o for o in lx.sb.ledger.orders.values()}
    assert orders["upscale"].sha256 == orders["background-generator"].output_sha256 == sha(generated)
    assert orders["upscale"].fields == {"quality": 2}
    snapshot = lx.sb.ledger.to_dict()["orders"]
    assert {o["tool"] for o in snapshot.values()} == {"background-generator", "upscale"}
    assert lx.sb.ledger.credits == 2 and lx.sb.ledger.max_submits_per_key() == 1


async def test_switches_apply_to_every_tool(make_lx):
    lx = await make_lx(rate_failed=1.0)
    order_id, _ = await order(lx, "upscale", jpeg_bytes(), quality=2)
    assert (await finished(lx, "upscale", order_id))["status"] == "failed" and lx.sb.ledger.credits == 0
    lx = await make_lx(credit_limit=0)
    url = await lx.upload(jpeg_bytes())
    status, answer = await lx.api("/v1/remove-background", {"imageUrl": url, "background": "white"})
    assert (status, answer["statusCode"]) == (402, 4020)
    lx = await make_lx(rate_429=1.0)
    status, _ = await lx.api("/v1/expand-photo", {"imageUrl": "x"})
    assert status == 429 and lx.sb.ledger.faults["429"] == 1 and lx.sb.ledger.requests["submit"] == 1
    lx = await make_lx(refuse_prompt="forbidden")
    url = await lx.upload(jpeg_bytes())
    status, answer = await lx.api("/v1/product-photoshoot", {"imageUrl": url, "textPrompt": "a Forbidden scene"})
    assert answer["statusCode"] == 4013


async def test_fast_mode_serves_one_small_jpeg_for_every_tool(make_lx):
    lx = await make_lx(fast=True)
    out, _ = await output(lx, "upscale", jpeg_bytes(), quality=4)
    assert picture(out).size == (64, 64)
