"""The sandbox speaks LightX's protocol, charges like LightX, injects faults without side effects, and paints."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import urllib.request
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from PIL import Image, ImageDraw

from helpers import KEY, Lx, jpeg_bytes
from pipeline.errors import ConfigError
from pipeline.sandbox import (Ledger, OrderRecord, SandboxOptions, SandboxThread, add_sandbox_arguments, create_app,
                              ledger_of, options_from_args)
from pipeline.media.fidelity import measure
from pipeline.sandbox import alter, painter, products
from pipeline.sandbox.scene import parse_prompt

FAST = dict(processing_s=0.05)


def png_bytes(size=(80, 60), alpha=True) -> bytes:
    img = Image.new("RGBA" if alpha else "RGB", size, (0, 0, 0, 0) if alpha else (255, 255, 255))
    ImageDraw.Draw(img).ellipse([20, 10, 60, 50], fill=(30, 90, 200, 255))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


# the happy path

async def test_full_flow_returns_a_jpeg_at_the_input_size(lx):
    data = jpeg_bytes((120, 90))
    order_id = await lx.order(data, "on a white marble counter")
    body = await lx.wait_done(order_id)
    assert body["status"] == "active"
    status, jpeg, content_type = await lx.get(body["output"])
    assert (status, content_type) == (200, "image/jpeg")
    with Image.open(io.BytesIO(jpeg)) as out:
        assert (out.format, out.size) == ("JPEG", (120, 90))
    ledger = lx.sb.ledger
    assert ledger.credits == 1
    assert ledger.submits_for(hashlib.sha256(data).hexdigest(), "on a white marble counter") == 1
    assert ledger.requests["upload_url"] == ledger.requests["put"] == ledger.requests["submit"] == 1
    assert ledger.requests["output"] == 1 and ledger.keys_seen_on_non_api == 0


async def test_responses_have_lightx_shape(lx):
    data = png_bytes()
    status, slot = await lx.slot(len(data), "image/png")
    assert status == 200 and slot["message"] == "SUCCESS"
    assert set(slot["body"]) == {"uploadImage", "imageUrl", "size"} and slot["body"]["size"] == len(data)
    put_url = slot["body"]["uploadImage"]
    assert re.search(r"/s3/apikey/[0-9a-f]{32}\.png\?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=\d{8}T\d{6}Z"
                     r"&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&X-Amz-Expires=3599"
                     r"&X-Amz-Credential=[^&]+&X-Amz-Signature=[0-9a-f]{64}$", put_url)
    assert re.search(r"/cdn/apikey/[0-9a-f]{32}\.png$", slot["body"]["imageUrl"])
    await lx.put(put_url, data, "image/png")
    status, body = await lx.submit(slot["body"]["imageUrl"])
    assert body["body"]["maxRetriesAllowed"] == 5
    assert body["body"]["avgResponseTimeInSec"] == FAST["processing_s"]  # its own processing time
    assert body["body"]["status"] == "init" and len(body["body"]["orderId"]) == 25
    _, polled = await lx.status(body["body"]["orderId"])
    assert set(polled["body"]) == {"orderId", "status", "output"}


async def test_image_url_serves_the_uploaded_bytes(lx):
    data = jpeg_bytes()
    url = await lx.upload(data)
    status, served, content_type = await lx.get(url)
    assert (status, served, content_type) == (200, data, "image/jpeg")


# the presigned PUT

def _tamper_signature(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    sig = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize("case", ["content_type", "longer_body", "shorter_body", "signature",
                                  "expired", "not_a_jpeg", "unknown_key"])
async def test_put_mismatch_is_403_with_s3_xml_and_has_no_effect(lx, case):
    data = jpeg_bytes()
    declared, content_type, body = len(data), "image/jpeg", data
    if case == "not_a_jpeg":
        body = png_bytes()
        declared = len(body)
    status, slot = await lx.slot(declared)
    url = slot["body"]["uploadImage"]
    if case == "content_type":
        content_type = "image/png"
    elif case == "longer_body":
        body = data + b"\0"
    elif case == "shorter_body":
        body = data[:-1]
    elif case == "signature":
        url = _tamper_signature(url)
    elif case == "expired":
        lx.sb.state.age_uploads(3600)
    elif case == "unknown_key":
        url = re.sub(r"apikey/[0-9a-f]{32}", "apikey/" + "0" * 32, url)
    status, text, headers = await lx.put(url, body, content_type)
    assert status == 403
    assert headers["Content-Type"].startswith("application/xml")
    assert text.startswith("<?xml") and re.search(r"<Error><Code>(SignatureDoesNotMatch|AccessDenied)</Code>"
                                                  r"<Message>[^<]+</Message>", text)
    assert len(lx.sb.ledger.rejected_uploads) == 1
    assert lx.sb.ledger.uploads_completed == 0
    status, refused = await lx.submit(slot["body"]["imageUrl"])
    assert status == 400 and refused["statusCode"] != 2000


async def test_put_needs_no_key_and_records_a_key_sent_anyway(lx):
    data = jpeg_bytes()
    _, slot = await lx.slot(len(data))
    status, text, headers = await lx.put(slot["body"]["uploadImage"], data, headers=KEY)
    assert status == 200 and text == "" and headers["ETag"]
    assert lx.sb.ledger.keys_seen_on_non_api == 1


# upload slot requests

@pytest.mark.parametrize("body", [
    {"uploadType": "imageUrl", "size": 5_242_881, "contentType": "image/jpeg"},
    {"uploadType": "imageUrl", "size": 0, "contentType": "image/jpeg"},
    {"uploadType": "imageUrl", "size": -5, "contentType": "image/jpeg"},
    {"uploadType": "imageUrl", "size": "100", "contentType": "image/jpeg"},
    {"uploadType": "imageUrl", "size": 100, "contentType": "image/gif"},
    {"uploadType": "imageUrl", "size": 100, "contentType": "image/webp"},
    {"uploadType": "file", "size": 100, "contentType": "image/png"},
    {"size": 100, "contentType": "image/png"},
    ["not", "an", "object"],
])
async def test_bad_slot_requests_are_rejected(lx, body):
    status, answer = await lx.api("/v2/uploadImageUrl", body)
    assert status == 400 and answer["statusCode"] == 4001 and answer["message"]
    assert lx.sb.state.slots == {}


async def test_a_body_that_is_not_json_is_rejected(lx):
    async with lx.s.post(lx.base + "/v1/background-generator", data=b"{nope", headers=KEY) as r:
        assert r.status == 400 and (await r.json())["statusCode"] == 4001


async def test_the_size_limit_is_inclusive(lx):
    status, answer = await lx.slot(5_242_880)
    assert status == 200 and answer["body"]["size"] == 5_242_880


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"X-API-KEY": "SANDBOX-KEY"}])
@pytest.mark.parametrize("path,body", [
    ("/v2/uploadImageUrl", {"uploadType": "imageUrl", "size": 10, "contentType": "image/jpeg"}),
    ("/v1/background-generator", {"imageUrl": "x", "textPrompt": "y"}),
    ("/v1/order-status", {"orderId": "x"}),
])
async def test_a_bad_key_is_401(lx, headers, path, body):
    status, answer = await lx.api(path, body, headers=headers)
    assert status == 401 and answer == {"statusCode": 4010, "message": "Invalid API key", "body": None}


async def test_a_custom_key(make_lx):
    lx = await make_lx(api_key="k-123")
    assert (await lx.slot(10))[0] == 401
    status, _ = await lx.api("/v2/uploadImageUrl",
                             {"uploadType": "imageUrl", "size": 10, "contentType": "image/jpeg"},
                             headers={"x-api-key": "k-123"})
    assert status == 200


# submit

async def test_external_and_unfinished_image_urls_are_rejected(lx):
    status, body = await lx.submit("https://example.com/mug.jpg")
    assert (status, body["statusCode"]) == (400, 4002)
    assert "External image URLs are not supported" in body["message"]
    _, slot = await lx.slot(100)
    status, body = await lx.submit(slot["body"]["imageUrl"])
    assert (status, body["statusCode"]) == (400, 4005)
    assert lx.sb.ledger.orders == {} and not lx.sb.ledger.submits


async def test_an_expired_upload_is_rejected(lx):
    url = await lx.upload(jpeg_bytes())
    lx.sb.state.age_uploads(24 * 3600 + 1)
    status, body = await lx.submit(url)
    assert (status, body["statusCode"]) == (400, 4003)
    assert (await lx.get(url))[0] == 403


async def test_uploads_can_be_aged_over_http(lx):
    url = await lx.upload(jpeg_bytes())
    async with lx.s.post(lx.base + "/__age_uploads", json={"seconds": 90000}) as r:
        assert (await r.json())["aged"] == 1
    assert (await lx.submit(url))[1]["statusCode"] == 4003


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 501, None, 42])
async def test_bad_prompts_are_rejected(lx, prompt):
    url = await lx.upload(jpeg_bytes())
    status, body = await lx.submit(url, prompt)
    assert (status, body["statusCode"]) == (400, 4001)
    assert lx.sb.ledger.orders == {}


async def test_a_500_character_prompt_is_accepted(lx):
    status, body = await lx.submit(await lx.upload(jpeg_bytes()), "y" * 500)
    assert status == 200 and body["statusCode"] == 2000


async def test_credit_limit_answers_402(make_lx):
    lx = await make_lx(credit_limit=1)
    await lx.order(jpeg_bytes())
    status, body = await lx.submit(await lx.upload(jpeg_bytes()))
    assert (status, body["statusCode"]) == (402, 4020)
    assert lx.sb.ledger.credits + lx.sb.ledger.pending == 1


# orders, credits, polls

async def test_credits_are_charged_without_polling(make_lx):
    now = [1_000_000.0]  # the sandbox's own clock, moved by hand: no sleeping
    lx = await make_lx(clock=lambda: now[0], processing_s=20.0)
    await lx.order(jpeg_bytes())
    await lx.order(jpeg_bytes(colour=(250, 250, 250)))
    assert lx.sb.ledger.credits == 0 and lx.sb.ledger.pending == 2
    now[0] += 19.0
    assert lx.sb.ledger.credits == 0 and lx.sb.ledger.pending == 2
    now[0] += 2.0
    assert lx.sb.ledger.credits == 2 and lx.sb.ledger.pending == 0
    assert lx.sb.ledger.requests["status"] == 0


async def test_failed_orders_charge_nothing(make_lx):
    lx = await make_lx(rate_failed=1.0)
    order_id = await lx.order(jpeg_bytes())
    body = await lx.wait_done(order_id)
    assert body == {"orderId": order_id, "status": "failed", "output": None}
    assert lx.sb.ledger.credits == 0
    status, text, _ = await lx.get(f"{lx.sb.root_url}/output/{order_id}.jpg")
    assert status == 404


@pytest.mark.parametrize("data", [b"\xff\xd8\xff" + b"not really a jpeg" * 10,
                                  jpeg_bytes((300, 200))[:400]], ids=["junk", "truncated"])
async def test_an_undecodable_image_fails_its_order_for_free(lx, data):
    body = await lx.wait_done(await lx.order(data))
    assert body["status"] == "failed" and lx.sb.ledger.credits == 0


async def test_status_checks_beyond_max_retries_are_overpolls(make_lx):
    lx = await make_lx(processing_s=30)
    order_id = await lx.order(jpeg_bytes())
    for _ in range(7):
        _, body = await lx.status(order_id)
        assert body["body"]["status"] == "init" and body["body"]["output"] is None
    assert lx.sb.ledger.overpolls == 2 and lx.sb.ledger.orders[order_id].polls == 7


async def test_unknown_order_is_rejected(lx):
    status, body = await lx.status("0" * 25)
    assert (status, body["statusCode"], body["message"]) == (400, 4004, "Order not found")


async def test_slow_orders_and_jitter_set_processing_time(make_lx):
    lx = await make_lx(slow_order_rate=1.0, slow_order_s=7.0)
    order = lx.sb.ledger.orders[await lx.order(jpeg_bytes())]
    assert order.done_at - order.created == pytest.approx(7.0)
    lx = await make_lx(processing_s=1.0, processing_jitter=0.5)
    times = [lx.sb.ledger.orders[await lx.order(jpeg_bytes())] for _ in range(8)]
    spans = {round(o.done_at - o.created, 6) for o in times}
    assert len(spans) > 1 and all(0.5 <= s <= 1.5 for s in spans)


async def test_output_is_deterministic_across_orders(lx):
    data = jpeg_bytes((100, 80))
    outputs = []
    for _ in range(2):
        body = await lx.wait_done(await lx.order(data, "teal studio"))
        outputs.append((await lx.get(body["output"]))[1])
    assert outputs[0] == outputs[1]
    assert lx.sb.ledger.max_submits_per_key() == 2 and lx.sb.ledger.credits == 2


async def test_fast_mode_serves_the_uploaded_picture_so_the_fidelity_gate_passes_it(make_lx, tmp_path):
    photo = products.draw(tmp_path / "p.jpg", 3, size=300).read_bytes()
    lx = await make_lx(fast=True)
    body = await lx.wait_done(await lx.order(photo))
    _, jpeg, _ = await lx.get(body["output"])
    assert Image.open(io.BytesIO(jpeg)).size == (300, 300)
    assert measure(photo, jpeg).fidelity > 0.9  # its product is the photo's: done, not held for review


async def test_fast_mode_honours_the_realistic_output_switches_and_rate_altered(make_lx, tmp_path):
    photo = products.draw(tmp_path / "p.jpg", 4, size=200).read_bytes()
    lx = await make_lx(fast=True, output_scale=1.25, output_shift=0.03, output_quality=85)
    _, faithful, _ = await lx.get((await lx.wait_done(await lx.order(photo)))["output"])
    assert Image.open(io.BytesIO(faithful)).size == (250, 250)
    score = measure(photo, faithful)
    assert score.fidelity > 0.8 and score.scale == pytest.approx(1.25, abs=0.04)
    lx = await make_lx(fast=True, rate_altered=1.0, output_scale=1.25)
    _, changed, _ = await lx.get((await lx.wait_done(await lx.order(photo)))["output"])
    assert [o.alteration for o in lx.sb.ledger.orders.values()] != [None]
    assert measure(photo, changed).fidelity < 0.7


async def test_fast_mode_makes_one_output_per_input_however_many_orders(make_lx, monkeypatch):
    made = []
    monkeypatch.setattr(alter, "fast", lambda image, **kw: made.append(kw) or jpeg_bytes((40, 30)))
    lx = await make_lx(fast=True)
    one, other = jpeg_bytes((120, 90)), jpeg_bytes((120, 90), colour=(250, 250, 240))
    for data, prompt in ((one, "on a table"), (one, "on sand"), (other, "on a table"), (one, "on grass")):
        status, jpeg, _ = await lx.get((await lx.wait_done(await lx.order(data, prompt)))["output"])
        assert status == 200 and jpeg == jpeg_bytes((40, 30))
    assert len(made) == 2 and lx.sb.ledger.credits == 4


# faults

SETUP_FOR = {"upload_url": "nothing", "submit": "uploaded", "status": "ordered"}


async def _call(lx: Lx, endpoint: str, ctx: dict):
    """Issue one request to ``endpoint``; returns the raw response (status, headers, text)."""
    if endpoint == "upload_url":
        req = lx.s.post(lx.base + "/v2/uploadImageUrl", headers=KEY,
                        json={"uploadType": "imageUrl", "size": 100, "contentType": "image/jpeg"})
    elif endpoint == "submit":
        req = lx.s.post(lx.base + "/v1/background-generator", headers=KEY,
                        json={"imageUrl": ctx["url"], "textPrompt": "on marble"})
    elif endpoint == "status":
        req = lx.s.post(lx.base + "/v1/order-status", headers=KEY, json={"orderId": ctx["order"]})
    elif endpoint == "put":
        req = lx.s.put(ctx["put_url"], data=ctx["data"], headers={"Content-Type": "image/jpeg"})
    else:
        req = lx.s.get(ctx["output"])
    async with req as r:
        return r.status, r.headers, await r.text(errors="replace")


async def _context(lx: Lx) -> dict:
    data = jpeg_bytes()
    url = await lx.upload(data)
    order = await lx.order(data)
    done = await lx.wait_done(order)
    _, slot = await lx.slot(len(data))
    lx.sb.ledger.reset()
    return {"data": data, "url": url, "order": order, "output": done["output"],
            "put_url": slot["body"]["uploadImage"], "slots": len(lx.sb.state.slots),
            "polls": lx.sb.state.orders[order].record.polls}


def _no_effect(lx: Lx, ctx: dict, kind: str) -> None:
    ledger = lx.sb.ledger
    assert len(lx.sb.state.slots) == ctx["slots"]
    assert ledger.orders == {} and not ledger.submits and ledger.uploads_completed == 0
    assert lx.sb.state.orders[ctx["order"]].record.polls == ctx["polls"]
    assert set(ledger.faults) == {kind}


def _assert_fault(kind: str, status: int, headers, text: str) -> None:
    if kind == "429":
        assert status == 429 and float(headers["Retry-After"]) == pytest.approx(0.25)
    elif kind == "5xx":
        assert status in (500, 502, 503)
    elif kind == "garbage":
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(text)
    elif kind == "bad_status":
        assert status == 200 and json.loads(text)["statusCode"] not in (2000, None)
    elif kind == "5000":
        assert status == 200 and json.loads(text)["statusCode"] == 5000
    elif kind == "truncated":
        assert status == 200 and headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("endpoint", ["upload_url", "submit", "status", "put", "output"])
@pytest.mark.parametrize("kind", ["reset", "5xx", "429", "garbage", "bad_status", "5000", "truncated"])
async def test_injected_faults_happen_before_any_effect(make_lx, kind, endpoint):
    lx = await make_lx(retry_after_s=0.25)
    ctx = await _context(lx)
    rate_field = {"reset": "rate_reset", "5xx": "rate_5xx", "429": "rate_429", "garbage": "rate_garbage",
                  "bad_status": "rate_bad_status", "5000": "rate_5000", "truncated": "rate_truncated"}[kind]
    api = endpoint in {"upload_url", "submit", "status"}
    applies = (kind == "truncated" and endpoint == "output") or (kind != "truncated" and (
        api or kind in ("reset", "5xx") or (kind == "garbage" and endpoint == "output")))
    lx.sb.set_options(**{rate_field: 1.0})
    if not applies:
        status, _, _ = await _call(lx, endpoint, ctx)
        assert status == 200 and not lx.sb.ledger.faults
        return
    if kind == "reset":
        with pytest.raises(aiohttp.ClientConnectionError):
            await _call(lx, endpoint, ctx)
    else:
        _assert_fault(kind, *await _call(lx, endpoint, ctx))
    # aiohttp itself retries an idempotent request (PUT, GET) once after a reset of a reused connection
    assert lx.sb.ledger.faults[kind] == lx.sb.ledger.requests[endpoint] >= 1
    _no_effect(lx, ctx, kind)
    lx.sb.set_options(**{rate_field: 0.0})
    status, _, _ = await _call(lx, endpoint, ctx)  # the retry works, and charges once
    assert status == 200


@pytest.mark.parametrize("kind", ["5000", "503", "reset"])
async def test_an_incident_answers_every_api_call_as_its_kind_says_then_ends(make_lx, kind):
    lx = await make_lx()
    ctx = await _context(lx)
    orders = len(lx.sb.state.orders)
    lx.sb.set_options(outage_s=30.0, outage_after=0, outage_kind=kind)  # from the next API call on
    for endpoint in ("upload_url", "submit", "status"):
        if kind == "reset":
            with pytest.raises(aiohttp.ClientConnectionError):
                await _call(lx, endpoint, ctx)
            continue
        status, _, text = await _call(lx, endpoint, ctx)
        if kind == "503":
            assert status == 503 and "503 Service Temporarily Unavailable" in text
        else:
            assert status == 200 and json.loads(text)["statusCode"] == 5000
    assert lx.sb.ledger.faults["outage"] >= 3  # nothing done: no slot, no order
    assert len(lx.sb.state.slots) == ctx["slots"] and len(lx.sb.state.orders) == orders
    lx.sb.set_options(outage_s=0.0)
    status, _, _ = await _call(lx, "upload_url", ctx)
    assert status == 200


async def test_fault_rates_are_shares_and_seeded(make_lx):
    kinds = []
    for _ in range(2):
        lx = await make_lx(rate_429=0.3, rate_5xx=0.2, seed=7)
        statuses = [(await _call(lx, "upload_url", {}))[0] for _ in range(200)]
        kinds.append(statuses)
        share_429 = statuses.count(429) / 200
        assert 0.2 < share_429 < 0.4
        assert len(lx.sb.state.slots) == statuses.count(200)
    assert kinds[0] == kinds[1]


async def test_latency_is_added(make_lx):
    lx = await make_lx(latency_s=0.15)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await lx.slot(10)
    assert loop.time() - start >= 0.15


# pictures

def mug_jpeg(size=(400, 400)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    w, h = size
    d = ImageDraw.Draw(img)
    d.rectangle([w * 0.3, h * 0.35, w * 0.62, h * 0.75], fill=(200, 30, 35))
    d.ellipse([w * 0.55, h * 0.44, w * 0.74, h * 0.64], outline=(190, 28, 33), width=int(w * 0.035))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_rendering_is_deterministic_and_depends_on_the_prompt():
    data = mug_jpeg((240, 200))
    a = painter.render(data, "on a wooden table, warm sunset")
    assert a == painter.render(data, "on a wooden table, warm sunset")
    assert a != painter.render(data, "on a white marble counter")


@pytest.mark.parametrize("size", [(1, 1), (37, 291), (640, 360)])
def test_rendering_preserves_size(size):
    with Image.open(io.BytesIO(painter.render(jpeg_bytes(size), "pastel pink"))) as out:
        assert (out.format, out.size) == ("JPEG", size)


def test_rendering_keeps_the_product_and_replaces_the_background():
    out = Image.open(io.BytesIO(painter.render(mug_jpeg(), "studio shot, teal background"))).convert("RGB")
    r, g, b = out.getpixel((180, 220))  # mug body
    assert r > 150 and g < 80 and b < 80
    for corner in [(5, 5), (395, 5), (200, 395)]:
        r, g, b = out.getpixel(corner)
        assert g > r + 20 and b > r + 20  # teal, not the white input
    handle_hole = out.getpixel((258, 216))
    assert handle_hole[1] > handle_hole[0]  # background shows through the handle


def test_an_alpha_channel_is_the_mask():
    out = Image.open(io.BytesIO(painter.render(png_bytes(), "on green grass"))).convert("RGB")
    assert out.size == (80, 60)
    r, g, b = out.getpixel((40, 30))
    assert b > 150 and r < 90  # the blue disc survives


@pytest.mark.parametrize("prompt,texture,wall", [
    ("on a white marble counter, soft morning light", "marble", "gradient"),
    ("on a wooden table, warm sunset", "wood", "sunset"),
    ("in a modern kitchen", "marble", "tiles"),
    ("on the beach", "sand", "sky"),
    ("teal background", None, "gradient"),
])
def test_prompt_words_pick_the_scene(prompt, texture, wall):
    scene = parse_prompt(prompt)
    assert (scene.texture, scene.wall) == (texture, wall)


# the ledger, the app object, the thread runner, the CLI surface

def test_ledger_counts_submits_per_key():
    now = [100.0]
    ledger = Ledger(clock=lambda: now[0])
    assert ledger.max_submits_per_key() == 0 and ledger.to_dict()["credits"] == 0

    def order(oid: str, sha: str, prompt: str, outcome: str = "active") -> OrderRecord:
        return OrderRecord(order_id=oid, sha256=sha, prompt=prompt, created=now[0], done_at=now[0] + 1,
                           outcome=outcome)
    ledger.record_order(order("o1", "aa", "on sand"))
    ledger.record_order(order("o2", "aa", "on sand", "failed"))  # the same purchase again, twice
    ledger.record_order(order("o3", "aa", "on sand"))
    ledger.record_order(order("o4", "aa", "on grass"))             # another prompt: another key
    assert ledger.submits_for("aa", "on sand") == 3 and ledger.submits_for("aa", "on grass") == 1
    assert ledger.max_submits_per_key() == 3 and ledger.to_dict()["submits"] == {"aa|on sand": 3, "aa|on grass": 1}
    assert (ledger.credits, ledger.pending) == (0, 4)  # none done yet
    now[0] += 1
    assert (ledger.credits, ledger.pending) == (3, 0)  # the failed order is free


def test_create_app_exposes_the_ledger():
    app = create_app(SandboxOptions(fast=True))
    assert ledger_of(app) is app["ledger"]


def _post_json(url: str, body, headers=None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_sandbox_thread_serves_sync_clients():
    with SandboxThread(SandboxOptions(**FAST)) as sb:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/external/api", sb.base_url) and sb.port > 0
        slot = _post_json(sb.base_url + "/v2/uploadImageUrl",
                          {"uploadType": "imageUrl", "size": 10, "contentType": "image/png"}, KEY)
        assert slot["statusCode"] == 2000
        assert sb.ledger_snapshot()["requests"] == {"upload_url": 1}
        assert _get_json(sb.base_url + "/__ledger")["requests"] == {"upload_url": 1}
        sb.set_options(rate_429=1.0)
        assert sb.options.rate_429 == 1.0
        assert _post_json(sb.base_url + "/__options", {"rate_429": 0})["rate_429"] == 0
        _post_json(sb.base_url + "/__reset", {})
        assert sb.ledger_snapshot()["requests"] == {}
        sb.age_uploads(10)
        sb.reset_ledger()


def test_every_option_is_a_cli_flag():
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for f in dataclasses.fields(SandboxOptions):
        assert "--" + f.name.replace("_", "-") in flags
    assert options_from_args(parser.parse_args([])) == SandboxOptions()
    args = parser.parse_args(["--fast", "--rate-429", "0.3", "--processing-s", "0.5", "--credit-limit", "3"])
    assert options_from_args(args) == SandboxOptions(fast=True, rate_429=0.3, processing_s=0.5, credit_limit=3)


def test_bad_options_are_a_config_error():
    with pytest.raises(ConfigError, match="rate_429 must be between 0 and 1"):
        SandboxOptions(rate_429=1.5)


def test_serve_announces_its_url(tmp_path):
    code = ("from pipeline.sandbox import serve, SandboxOptions\n"
            "serve('127.0.0.1', 0, SandboxOptions(fast=True))\n")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            line = proc.stdout.readline()
            match = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+/external/api) "
                                 r"\(key: sandbox-key\)\n", line)
            assert match, line
            assert _get_json(match.group(1) + "/__ledger")["credits"] == 0
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
