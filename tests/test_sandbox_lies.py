"""The sandbox's switches for the ways a real API may lie: a skewed clock, other refusal codes,
refusals sent as HTTP 200, refused prompts, truncated downloads; and per-order poll counts."""
from __future__ import annotations

import argparse
import io
import json
import math
import time
import urllib.request
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image

from helpers import KEY, Lx, jpeg_bytes
from pipeline.cli import build_parser
from pipeline.errors import ConfigError
from pipeline.sandbox import SandboxOptions, SandboxThread, create_app
from pipeline.sandbox import alter
from pipeline.sandbox.app import state_of
from pipeline.sandbox.options import options_from_args
from pipeline.sandbox.presign import amz_date

DAY = 24 * 3600
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    """A base clock that moves only when told to."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_sandbox(make_lx):
    """Factory: ``lx = await make_sandbox(clock=..., **SandboxOptions fields)`` on a fresh sandbox."""
    return make_lx


async def _set_options(lx: Lx, **changes) -> tuple[int, dict]:
    async with lx.s.post(lx.base + "/__options", json=changes) as r:
        return r.status, await r.json()


async def _ledger(lx: Lx) -> dict:
    async with lx.s.get(lx.base + "/__ledger") as r:
        return await r.json()


# clock_skew_s and the base clock

async def test_moving_the_sandbox_clock_at_runtime_expires_uploaded_image_urls(make_sandbox):
    lx = await make_sandbox()
    early, late = await lx.upload(jpeg_bytes()), await lx.upload(jpeg_bytes(colour=(250, 250, 250)))
    assert (await lx.submit(early))[0] == 200
    status, options = await _set_options(lx, clock_skew_s=25 * 3600)
    assert status == 200 and options["clock_skew_s"] == 25 * 3600
    status, body = await lx.submit(late)
    assert (status, body["statusCode"]) == (400, 4003)
    assert (await lx.get(late))[0] == 403
    assert len(lx.sb.ledger.orders) == 1
    # nothing about the upload changed, only the sandbox's clock: back in step, the URL is fresh again
    await _set_options(lx, clock_skew_s=0)
    assert (await lx.submit(late))[0] == 200


async def test_a_skewed_clock_expires_presigned_put_urls(make_sandbox):
    lx = await make_sandbox()
    data = jpeg_bytes()
    _, slot = await lx.slot(len(data))
    lx.sb.set_options(clock_skew_s=3600)
    status, text, _ = await lx.put(slot["body"]["uploadImage"], data)
    assert status == 403 and "<Code>AccessDenied</Code>" in text and "expired" in text


@pytest.mark.parametrize("skew", [0.0, 3600.0, -7200.5])
async def test_every_sandbox_timestamp_is_base_clock_plus_skew(make_sandbox, skew):
    clock = FakeClock()
    lx = await make_sandbox(clock=clock, clock_skew_s=skew, processing_s=10)
    assert lx.sb.state.clock() == T0 + skew
    data = jpeg_bytes()
    _, slot = await lx.slot(len(data))
    query = dict(parse_qsl(urlsplit(slot["body"]["uploadImage"]).query))
    assert query["X-Amz-Date"] == amz_date(T0 + skew)
    assert lx.sb.state.slots_by_url[slot["body"]["imageUrl"]].created == T0 + skew
    await lx.put(slot["body"]["uploadImage"], data)
    _, body = await lx.submit(slot["body"]["imageUrl"])
    order_id = body["body"]["orderId"]
    record = (await _ledger(lx))["orders"][order_id]
    assert (record["created"], record["done_at"]) == (T0 + skew, T0 + skew + 10)
    assert (await lx.status(order_id))[1]["body"]["status"] == "init"
    clock.now += 10  # the base clock reaches done_at - skew
    assert (await lx.status(order_id))[1]["body"]["status"] == "active"
    assert lx.sb.ledger.credits == 1


async def test_a_virtual_clock_drives_upload_expiry(make_sandbox):
    clock = FakeClock()
    lx = await make_sandbox(clock=clock)
    url = await lx.upload(jpeg_bytes())
    clock.now += DAY
    assert (await lx.submit(url))[0] == 200  # exactly 24 h old is still valid
    clock.now += 1
    assert (await lx.submit(url))[1]["statusCode"] == 4003


def test_create_app_takes_a_base_clock_and_adds_the_skew():
    state = state_of(create_app(SandboxOptions(clock_skew_s=2.0), clock=lambda: 5.0))
    assert state.clock() == 7.0 and state.ledger.clock() == 7.0
    state.set_options(clock_skew_s=-1.0)
    assert state.clock() == 4.0 and state.ledger.clock() == 4.0
    assert abs(state_of(create_app()).clock() - time.time()) < 5


def _post_json(url: str, body, headers=None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_sandbox_thread_takes_a_base_clock():
    clock = FakeClock()
    with SandboxThread(SandboxOptions(fast=True, processing_s=10), clock=clock) as sb:
        slot = _post_json(sb.base_url + "/v2/uploadImageUrl",
                          {"uploadType": "imageUrl", "size": 10, "contentType": "image/png"}, KEY)
        assert f"X-Amz-Date={amz_date(T0)}" in slot["body"]["uploadImage"]
        assert sb.call(sb.sandbox.state.clock) == T0


# how an expired imageUrl is refused

@pytest.mark.parametrize("options,code,message", [
    ({}, 4003, "imageUrl has expired; upload the image again"),
    ({"expired_status_code": 4007, "expired_message": "IMAGE_URL_EXPIRED"}, 4007, "IMAGE_URL_EXPIRED"),
], ids=["default", "4007"])
async def test_the_expired_refusal_is_configurable(make_sandbox, options, code, message):
    lx = await make_sandbox(**options)
    url = await lx.upload(jpeg_bytes())
    lx.sb.state.age_uploads(DAY + 1)
    status, body = await lx.submit(url)
    assert (status, body) == (400, {"statusCode": code, "message": message, "body": None})
    assert lx.sb.ledger.orders == {}


# refusals sent as HTTP 200

async def _refusal(lx: Lx, case: str) -> tuple[int, str, dict]:
    """Provoke one kind of refusal; returns (HTTP status, Content-Type, body)."""
    path, body = "/v1/background-generator", None
    if case == "4001":
        body = {"imageUrl": await lx.upload(jpeg_bytes()), "textPrompt": "x" * 501}
    elif case == "4002":
        body = {"imageUrl": "https://example.com/mug.jpg", "textPrompt": "on marble"}
    elif case == "expired":
        body = {"imageUrl": await lx.upload(jpeg_bytes()), "textPrompt": "on marble"}
        lx.sb.state.age_uploads(DAY + 1)
    elif case == "4004":
        path, body = "/v1/order-status", {"orderId": "0" * 25}
    elif case == "4005":
        _, slot = await lx.slot(100)
        body = {"imageUrl": slot["body"]["imageUrl"], "textPrompt": "on marble"}
    elif case == "4013":
        body = {"imageUrl": await lx.upload(jpeg_bytes()), "textPrompt": "a FORBIDDEN scene"}
    async with lx.s.post(lx.base + path, json=body, headers=KEY) as r:
        return r.status, r.content_type, await r.json()


REFUSALS = {"4001": (4001, "textPrompt must be at most 500 characters"),
            "4002": (4002, "External image URLs are not supported; "
                           "upload the image through v2/uploadImageUrl"),
            "expired": (4007, "IMAGE_URL_EXPIRED"),
            "4004": (4004, "Order not found"),
            "4005": (4005, "imageUrl has no uploaded image; the PUT never completed"),
            "4013": (4013, "PROMPT_NOT_ALLOWED")}
LIAR = dict(expired_status_code=4007, expired_message="IMAGE_URL_EXPIRED", refuse_prompt="forbidden")


@pytest.mark.parametrize("case", list(REFUSALS))
@pytest.mark.parametrize("http_200", [False, True], ids=["http_400", "http_200"])
async def test_refusals_can_be_sent_as_http_200_with_status_fail(make_sandbox, case, http_200):
    lx = await make_sandbox(refusals_http_200=http_200, **LIAR)
    code, message = REFUSALS[case]
    status, content_type, body = await _refusal(lx, case)
    assert content_type == "application/json"
    if http_200:
        assert (status, body) == (200, {"status": "FAIL", "statusCode": code, "message": message,
                                        "description": message, "body": None})
    else:
        assert (status, body) == (400, {"statusCode": code, "message": message, "body": None})
    assert lx.sb.ledger.orders == {} and not lx.sb.ledger.submits


async def test_bad_key_and_no_credits_keep_their_http_status_under_refusals_http_200(make_sandbox):
    lx = await make_sandbox(refusals_http_200=True, credit_limit=0)
    status, body = await lx.api(
        "/v2/uploadImageUrl", {"uploadType": "imageUrl", "size": 10, "contentType": "image/jpeg"},
        headers={"x-api-key": "wrong"})
    assert (status, body) == (401, {"statusCode": 4010, "message": "Invalid API key", "body": None})
    status, body = await lx.submit(await lx.upload(jpeg_bytes()))
    assert (status, body) == (402, {"statusCode": 4020, "message": "Insufficient credits", "body": None})


# refused prompts

@pytest.mark.parametrize("prompt,refused", [
    ("a forbidden beach", True),
    ("A FORBIDDEN beach", True),
    ("Forbiddenness on marble", True),
    ("on a white marble counter", False),
    ("forbid den", False),
])
async def test_a_prompt_containing_refuse_prompt_is_refused_every_time(make_sandbox, prompt, refused):
    lx = await make_sandbox(refuse_prompt="ForBidden")
    url = await lx.upload(jpeg_bytes())
    answers = [await lx.submit(url, prompt) for _ in range(3)]
    if refused:
        assert answers == [(400, {"statusCode": 4013, "message": "PROMPT_NOT_ALLOWED", "body": None})] * 3
        assert lx.sb.ledger.orders == {} and not lx.sb.ledger.submits
        assert lx.sb.ledger.committed() == 0
    else:
        assert [status for status, _ in answers] == [200] * 3 and len(lx.sb.ledger.orders) == 3


async def test_refuse_prompt_can_be_lifted_at_runtime(make_sandbox):
    lx = await make_sandbox(refuse_prompt="marble")
    url = await lx.upload(jpeg_bytes())
    assert (await lx.submit(url, "on marble"))[1]["statusCode"] == 4013
    assert (await _set_options(lx, refuse_prompt=None))[1]["refuse_prompt"] is None
    assert (await lx.submit(url, "on marble"))[0] == 200


# truncated downloads

async def _download(lx: Lx, url: str) -> tuple[int, str, int, bytes]:
    async with lx.s.get(url) as r:
        return r.status, r.content_type, int(r.headers["Content-Length"]), await r.read()


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except OSError:
        return False


async def test_a_truncated_output_looks_like_a_jpeg_but_does_not_decode(make_sandbox):
    lx = await make_sandbox(rate_truncated=1.0)
    done = await lx.wait_done(await lx.order(jpeg_bytes((120, 90))))
    status, content_type, length, cut = await _download(lx, done["output"])
    assert (status, content_type) == (200, "image/jpeg")
    assert length == len(cut) and cut.startswith(b"\xff\xd8\xff")
    assert not _decodes(cut)
    assert lx.sb.ledger.faults["truncated"] == 1
    lx.sb.set_options(rate_truncated=0.0)
    status, _, length, full = await _download(lx, done["output"])
    assert status == 200 and length == len(full) and _decodes(full)
    assert cut == full[:len(full) // 2]
    assert lx.sb.ledger.faults["truncated"] == 1


async def test_truncation_is_drawn_per_download_from_the_seed(make_sandbox):
    runs = []
    for _ in range(2):
        lx = await make_sandbox(rate_truncated=0.5, seed=3, fast=True)
        done = await lx.wait_done(await lx.order(jpeg_bytes()))
        lengths = [(await _download(lx, done["output"]))[2] for _ in range(40)]
        full = len(alter.fast(jpeg_bytes()))  # fast mode's output: the uploaded picture, re-encoded
        assert set(lengths) == {full, full // 2}
        assert lengths.count(full // 2) == lx.sb.ledger.faults["truncated"]
        runs.append(lengths)
    assert runs[0] == runs[1]


async def test_an_unfinished_output_is_not_truncated(make_sandbox):
    lx = await make_sandbox(rate_truncated=1.0, processing_s=30)
    order_id = await lx.order(jpeg_bytes())
    status, _, _ = await lx.get(f"{lx.sb.root_url}/output/{order_id}.jpg")
    assert status == 404 and not lx.sb.ledger.faults


# status checks per order, for a test in another process

async def test_the_ledger_reports_polls_per_order(make_sandbox):
    lx = await make_sandbox(processing_s=30)
    polled, parked = await lx.order(jpeg_bytes()), await lx.order(jpeg_bytes(colour=(250, 250, 250)))
    for _ in range(3):
        await lx.status(polled)
    before = await _ledger(lx)
    assert before["polls_per_order"] == {polled: 3, parked: 0}
    assert before["max_polls_per_order"] == 3
    assert {"credits", "pending", "orders", "submits", "max_submits_per_key", "overpolls", "faults",
            "requests", "uploads_completed"} <= set(before)
    await lx.status(parked)
    after = await _ledger(lx)
    extra = {oid: n - before["polls_per_order"].get(oid, 0) for oid, n in after["polls_per_order"].items()}
    assert extra == {polled: 0, parked: 1}


async def test_polls_per_order_count_since_the_last_reset(make_sandbox):
    lx = await make_sandbox(processing_s=30)
    order_id = await lx.order(jpeg_bytes())
    for _ in range(6):
        await lx.status(order_id)
    lx.sb.ledger.reset()
    ledger = await _ledger(lx)
    assert (ledger["polls_per_order"], ledger["max_polls_per_order"]) == ({}, 0)
    await lx.status(order_id)
    ledger = await _ledger(lx)
    assert (ledger["polls_per_order"], ledger["max_polls_per_order"]) == ({order_id: 1}, 1)
    assert lx.sb.state.orders[order_id].record.polls == 7  # the order's allowance counts its whole life
    assert ledger["overpolls"] == 1


# the options themselves

NEW_FLAGS = ["--clock-skew-s", "--expired-status-code", "--expired-message", "--refusals-http-200",
             "--refuse-prompt", "--rate-truncated"]


def test_the_new_options_are_sandbox_cli_flags():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    sandbox = action.choices["sandbox"]
    help_text = sandbox.format_help()
    for flag in NEW_FLAGS:
        assert flag in help_text
    args = sandbox.parse_args(["--clock-skew-s", "-3600", "--expired-status-code", "4007",
                               "--expired-message", "IMAGE_URL_EXPIRED", "--refusals-http-200",
                               "--refuse-prompt", "nsfw", "--rate-truncated", "0.2"])
    assert options_from_args(args) == SandboxOptions(
        clock_skew_s=-3600, expired_status_code=4007, expired_message="IMAGE_URL_EXPIRED",
        refusals_http_200=True, refuse_prompt="nsfw", rate_truncated=0.2)
    assert options_from_args(sandbox.parse_args([])) == SandboxOptions()


def test_the_defaults_keep_the_sandbox_honest():
    options = SandboxOptions()
    assert (options.clock_skew_s, options.expired_status_code, options.refusals_http_200,
            options.refuse_prompt, options.rate_truncated) == (0.0, 4003, False, None, 0.0)
    assert options.expired_message == "imageUrl has expired; upload the image again"


@pytest.mark.parametrize("changes,problem", [
    ({"rate_truncated": 1.5}, "rate_truncated must be between 0 and 1"),
    ({"rate_truncated": -0.1}, "rate_truncated must be between 0 and 1"),
    ({"clock_skew_s": math.inf}, "clock_skew_s must be a finite number"),
    ({"clock_skew_s": math.nan}, "clock_skew_s must be a finite number"),
    ({"expired_status_code": 2000}, "expired_status_code must not be 2000"),
    ({"expired_message": ""}, "expired_message must not be empty"),
    ({"refuse_prompt": ""}, "refuse_prompt must not be empty"),
])
def test_bad_new_options_are_a_config_error(changes, problem):
    with pytest.raises(ConfigError, match=problem):
        SandboxOptions(**changes)


@pytest.mark.parametrize("changes", [{"rate_truncated": 2}, {"no_such_option": 1}])
async def test_bad_runtime_options_are_refused_and_change_nothing(make_sandbox, changes):
    lx = await make_sandbox()
    before = lx.sb.options
    status, body = await _set_options(lx, **changes)
    assert status == 400 and len(body["problems"]) == 1
    assert lx.sb.options == before
