"""The LightX client against scripted aiohttp servers on 127.0.0.1: error mapping and retries."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pipeline.lightx.client import Client
from pipeline.inputs.config import RetrySettings
from pipeline.errors import AuthError, CreditsError, ItemError, Refused, Stopped, WrongApi
from pipeline.lightx.pacing import Pacer
from pipeline.lightx.wire import Wire

KEY = "test-key-0123456789abcdef0123456789"
FAST = RetrySettings(transient=4, backoff_base_s=0.01, backoff_max_s=0.05)


def ok(body: dict) -> web.Response:
    return web.json_response({"statusCode": 2000, "message": "SUCCESS", "body": body})


class Script:
    """Answers a route from a list of responses, then repeats the last one; records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen: list[web.Request] = []
        self.headers: list[dict] = []
        self.bodies: list[bytes] = []
        self.seen_at: list[float] = []  # the loop's time of each request

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        self.seen_at.append(asyncio.get_running_loop().time())
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.read())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "reset":
            request.transport.close()
            await asyncio.sleep(0.01)
            return web.Response()
        return answer() if callable(answer) else answer


def _handler(script: Script):
    async def handle(request: web.Request) -> web.StreamResponse:
        return await script(request)
    return handle


@pytest.fixture
async def serve():
    servers, sessions = [], []

    async def make(routes: dict[str, Script], **client_kw):
        app = web.Application()
        for path, script in routes.items():
            method, _, route = path.partition(" ")
            app.router.add_route(method, route, _handler(script))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        session = Wire()
        sessions.append(session)
        base = str(server.make_url("/api"))
        client = Client(session, base, KEY, retries=client_kw.pop("retries", FAST), **client_kw)
        return client, base
    yield make
    for s in sessions:
        await s.close()
    for s in servers:
        await s.close()


async def test_submit_happy_path_sends_key_and_parses(serve):
    script = Script(lambda: ok({"orderId": "o1", "maxRetriesAllowed": 5, "status": "init"}))
    client, _ = await serve({"POST /api/v1/background-generator": script})
    order = await client.submit("http://img", "a mug")
    assert order.order_id == "o1" and order.max_retries == 5
    assert script.headers[0]["x-api-key"] == KEY
    assert json.loads(script.bodies[0]) == {"imageUrl": "http://img", "textPrompt": "a mug"}


@pytest.mark.parametrize("fault", [
    lambda: web.Response(status=503, text="busy"),
    lambda: web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html"),
    lambda: web.Response(status=200, text="<html>gateway</html>", content_type="text/html"),
    lambda: web.Response(status=200, body=b"\x00\x01garbage"),
    lambda: web.Response(status=429, headers={"Retry-After": "0"}),
    "reset",
], ids=["503", "502-html", "200-html", "garbage", "429", "reset"])
async def test_transient_faults_are_retried(serve, fault):
    script = Script(fault, fault, lambda: ok({"orderId": "o2", "status": "init"}))
    client, _ = await serve({"POST /api/v1/background-generator": script})
    order = await client.submit("http://img", "p")
    assert order.order_id == "o2"
    assert len(script.seen) == 3


async def test_gives_up_after_bounded_attempts_as_item_error(serve):
    script = Script(lambda: web.Response(status=500))
    client, _ = await serve({"POST /api/v1/order-status": script})
    with pytest.raises(ItemError, match="gave up after 4 attempts: order-status: HTTP 500"):
        await client.order_status("o1")
    assert len(script.seen) == 4


async def test_retry_after_is_honoured_and_reported_to_the_pacer(serve):
    script = Script(lambda: web.Response(status=429, headers={"Retry-After": "0.3"}),
                    lambda: ok({"orderId": "o", "status": "init", "output": None}))
    class Spy(Pacer):  # the pacer as the client sees it: through its public methods
        def __init__(self):
            super().__init__()
            self.throttles: list[float | None] = []

        def throttled(self, retry_after: float | None) -> None:
            self.throttles.append(retry_after)
            super().throttled(retry_after)

    pacer = Spy()
    client, _ = await serve({"POST /api/v1/order-status": script}, pacer=pacer)
    await client.order_status("o")
    assert pacer.throttles == [0.3]
    first, second = script.seen_at
    assert second - first >= 0.3  # the retry waited out Retry-After


async def test_retry_after_as_a_date_is_read_on_the_servers_clock(serve):
    # The server's clock runs an hour ahead of ours; it asks for 2 s as an HTTP-date with its Date.
    from email.utils import formatdate
    import time

    def throttled():
        now = time.time() + 3600
        return web.Response(status=429, headers={"Date": formatdate(now, usegmt=True),
                                                 "Retry-After": formatdate(now + 2, usegmt=True)})
    script = Script(throttled, lambda: ok({"orderId": "o", "status": "init", "output": None}))
    client, _ = await serve({"POST /api/v1/order-status": script})
    await client.order_status("o")
    first, second = script.seen_at
    assert 1.0 <= second - first < 60  # its 2 s (whole seconds on the wire), not an hour, not at once


async def test_wrong_key_is_fatal_after_one_request_even_with_many_in_flight(serve):
    script = Script(lambda: web.json_response({"statusCode": 4010, "message": "Invalid API key"},
                                              status=401))
    client, _ = await serve({"POST /api/v2/uploadImageUrl": script})
    results = await asyncio.gather(*(client.upload_slot(10, "image/jpeg") for _ in range(50)),
                                   return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert len(script.seen) == 1
    assert KEY not in str(results[0])
    assert "401" in str(results[0])


@pytest.mark.parametrize("answer", [
    lambda: web.json_response({"statusCode": 4020, "message": "Payment required"}, status=402),
    lambda: web.json_response({"statusCode": 4030, "message": "Insufficient credits"}),
], ids=["http-402", "message"])
async def test_no_credits_is_fatal(serve, answer):
    client, _ = await serve({"POST /api/v1/background-generator": Script(answer)})
    with pytest.raises(CreditsError, match="no credits left"):
        await client.submit("http://img", "p")


async def test_rejected_prompt_is_an_item_error_not_retried(serve):
    script = Script(lambda: web.json_response({"statusCode": 4001, "message": "textPrompt too long"},
                                              status=400))
    client, _ = await serve({"POST /api/v1/background-generator": script})
    with pytest.raises(ItemError, match="HTTP 400, statusCode 4001: textPrompt too long"):
        await client.submit("http://img", "p")
    assert len(script.seen) == 1


async def test_put_and_download_never_carry_the_key(serve):
    put = Script(lambda: web.Response(status=200))
    get = Script(lambda: web.Response(body=b"\xff\xd8\xffjpeg", content_type="image/jpeg"))
    client, base = await serve({"PUT /s3/x": put, "GET /out/x.jpg": get})
    root = base.rsplit("/api", 1)[0]
    await client.put_image(f"{root}/s3/x?X-Amz-Signature=abc", b"12345", "image/png")
    assert await client.download(f"{root}/out/x.jpg") == b"\xff\xd8\xffjpeg"
    for headers in put.headers + get.headers:
        assert "x-api-key" not in {k.lower() for k in headers}
    assert put.headers[0]["Content-Type"] == "image/png"
    assert put.headers[0]["Content-Length"] == "5"


async def test_put_403_s3_error_is_an_item_error_with_its_code(serve):
    xml = "<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code></Error>"
    client, base = await serve({"PUT /s3/x": Script(lambda: web.Response(status=403, text=xml))})
    with pytest.raises(ItemError, match="SignatureDoesNotMatch"):
        await client.put_image(base.rsplit("/api", 1)[0] + "/s3/x", b"1", "image/jpeg")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.invalid/x.jpg"])
async def test_output_urls_are_fetched_only_over_http(serve, url):
    client, _ = await serve({})
    with pytest.raises(ItemError, match="non-http"):
        await client.download(url)


async def test_active_without_output_is_not_trusted(serve):
    script = Script(lambda: ok({"orderId": "o", "status": "active"}),
                    lambda: ok({"orderId": "o", "status": "active", "output": "http://x/o.jpg"}))
    client, _ = await serve({"POST /api/v1/order-status": script})
    status = await client.order_status("o")
    assert status.output == "http://x/o.jpg"


def fail(code: int, message: str):
    """A refusal as other people's clients have seen LightX send it: HTTP 200, status FAIL."""
    return lambda: web.json_response({"status": "FAIL", "statusCode": code, "message": message,
                                      "description": "The image URL has expired"})


async def test_a_refusal_is_asked_once_more_not_retried_as_transient(serve):
    script = Script(fail(4007, "IMAGE_URL_EXPIRED"))
    client, _ = await serve({"POST /api/v1/background-generator": script})
    with pytest.raises(Refused, match="statusCode 4007: IMAGE_URL_EXPIRED .The image URL has expired.") as got:
        await client.submit("http://img", "p")
    assert got.value.status_code == 4007 and len(script.seen) == 2


async def test_a_refusal_that_goes_away_when_asked_again_succeeds(serve):
    script = Script(fail(4010, "TRY_AGAIN"), lambda: ok({"orderId": "o3", "status": "init"}))
    client, _ = await serve({"POST /api/v1/background-generator": script})
    assert (await client.submit("http://img", "p")).order_id == "o3"
    assert len(script.seen) == 2


@pytest.mark.parametrize("http_status", [200, 500])
async def test_a_5xxx_status_code_is_a_server_fault_retried_past_two_answers(serve, http_status):
    def internal():
        return web.json_response({"statusCode": 5000, "message": "INTERNAL_SERVER_ERROR", "body": None},
                                 status=http_status)
    script = Script(*[internal] * 5, lambda: ok({"orderId": "o4", "status": "init"}))
    client, _ = await serve({"POST /api/v1/background-generator": script}, retries=RetrySettings(
        backoff_base_s=0.01, backoff_max_s=0.05))
    assert (await client.submit("http://img", "p")).order_id == "o4"
    assert len(script.seen) == 6


async def test_transient_faults_are_retried_for_the_budget_then_the_item_fails(serve):
    script = Script(lambda: web.json_response({"statusCode": 5000, "message": "INTERNAL_SERVER_ERROR"}))
    client, _ = await serve({"POST /api/v1/order-status": script}, retries=RetrySettings(
        backoff_base_s=0.01, backoff_max_s=0.02, budget_s=0.3))
    with pytest.raises(ItemError, match="gave up after .* attempts: v1/order-status: statusCode 5000"):
        await client.order_status("o1")
    assert 5 < len(script.seen) < 1000


async def test_a_refusal_proves_the_key_and_opens_the_first_call_gate(serve):
    in_flight, peak = 0, 0

    async def slow_refusal(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return fail(4007, "IMAGE_URL_EXPIRED")()

    client, _ = await serve({"POST /api/v1/background-generator": slow_refusal})
    results = await asyncio.gather(*(client.submit("http://img", "p") for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, Refused) for r in results)
    assert peak > 1  # after the first refusal the others went out together


@pytest.mark.parametrize("answer, what", [
    (lambda: web.Response(status=404, text="404: Not Found"), "HTTP 404"),
    (lambda: web.json_response({"error": "no such route"}), "JSON without a statusCode"),
], ids=["404", "foreign-json"])
async def test_a_first_answer_that_is_not_lightx_is_a_wrong_base_url(serve, answer, what):
    script = Script(answer)
    client, base = await serve({"POST /api/v2/uploadImageUrl": script})
    results = await asyncio.gather(*(client.upload_slot(10, "image/jpeg") for _ in range(20)),
                                   return_exceptions=True)
    assert all(isinstance(r, WrongApi) for r in results), results[:2]
    assert len(script.seen) == 1
    message = str(results[0])
    assert what in message and base in message and "api.base_url" in message and "LIGHTX_BASE_URL" in message


async def test_a_404_with_a_lightx_answer_is_the_api_speaking(serve):
    script = Script(lambda: web.json_response({"statusCode": 4004, "message": "Order not found"}, status=404))
    client, _ = await serve({"POST /api/v1/order-status": script})
    with pytest.raises(Refused, match="4004"):
        await client.order_status("o")


async def test_stop_ends_backoff_at_once_and_sends_nothing_more(serve):
    script = Script(lambda: web.Response(status=503))
    client, _ = await serve({"POST /api/v1/order-status": script},
                            retries=RetrySettings(transient=8, backoff_base_s=5, backoff_max_s=30))
    task = asyncio.ensure_future(client.order_status("o"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (script.seen and not client.sending(task)):  # first attempt answered; now in its backoff
        assert loop.time() < deadline, "the first attempt was never answered"
        await asyncio.sleep(0.01)
    client.stop()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(Stopped):
        await client.order_status("o")
    assert len(script.seen) == 1
