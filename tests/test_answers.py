"""lightx/answers.py: reading LightX's error answers, S3's XML and Retry-After, directly; and the
auth-by-message path through the client (an HTTP 200 or 400 whose message says the key is wrong)."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pipeline.errors import AuthError, CreditsError
from pipeline.inputs.config import RetrySettings
from pipeline.lightx.answers import (answer_message, detail, fatal_from_message, lightx_error, parse_retry_after,
                                     s3_message, snippet)
from pipeline.lightx.client import Client
from pipeline.lightx.wire import Wire


@pytest.mark.parametrize("message", ["Invalid API key", "apiKey missing", "Unauthorized", "UNAUTHORISED request",
                                     "x-api-key header is wrong"])
def test_a_message_about_the_key_is_an_auth_error(message):
    error = fatal_from_message(4010, message)
    assert isinstance(error, AuthError)
    assert str(error) == f"API key rejected (statusCode 4010: {message})"


@pytest.mark.parametrize("message", ["Insufficient credits", "credit balance is 0", "Monthly quota exceeded"])
def test_a_message_about_credits_is_a_credits_error(message):
    error = fatal_from_message(5040, message)
    assert isinstance(error, CreditsError)
    assert str(error) == f"no credits left (statusCode 5040: {message})"


@pytest.mark.parametrize("message", ["", "imageUrl has expired", "PROMPT_NOT_ALLOWED", "key not found in image"])
def test_other_messages_are_not_fatal(message):
    assert fatal_from_message(4003, message) is None


def test_credits_win_over_the_key_when_a_message_names_both():
    assert isinstance(fatal_from_message(4000, "API key has insufficient credits"), CreditsError)


@pytest.mark.parametrize("text, expected", [
    (b'{"statusCode": 4013, "message": "PROMPT_NOT_ALLOWED"}', (4013, "PROMPT_NOT_ALLOWED")),
    (b'{"statusCode": 5001, "message": "FAIL", "description": "image too small"}', (5001, "FAIL (image too small)")),
    (b'{"statusCode": 5001, "message": "FAIL", "description": "FAIL"}', (5001, "FAIL")),
    (b'{"statusCode": 5001, "description": "image too small"}', (5001, "image too small")),
    (b'{"message": "no code"}', (None, "no code")),
    (b'[1, 2]', (None, "")),
    (b"<html>502 Bad Gateway</html>", (None, "")),
    (b"", (None, "")),
])
def test_lightx_error_reads_code_and_message(text, expected):
    assert lightx_error(text) == expected


def test_a_message_is_cut_at_200_characters():
    assert answer_message({"message": "x" * 150, "description": "y" * 150}) == "x" * 150 + " (" + "y" * 48


def test_s3_message_is_the_xml_error_code():
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
           b"<Message>The request signature we calculated does not match</Message></Error>")
    assert s3_message(xml) == "SignatureDoesNotMatch"
    assert s3_message(b"<Error><Message>no code</Message></Error>") == ""


@pytest.mark.parametrize("code, message, expected", [
    (4003, "expired", ", statusCode 4003: expired"), (None, "expired", ", expired"),
    (4003, "", ", statusCode 4003"), (None, "", ""),
])
def test_detail_joins_what_is_known(code, message, expected):
    assert detail(code, message) == expected


@pytest.mark.parametrize("value, seconds", [
    ("3", 3.0), ("0.25", 0.25), ("0", 0.0), ("-5", 0.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00", None),  # a date without its zone is not an HTTP-date
])
def test_retry_after_in_seconds_or_none(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value, date, seconds", [
    # An HTTP-date (RFC 9110 allows one) is read against the same answer's Date: a server whose
    # clock runs an hour ahead of ours still means 30 s.
    ("Sun, 06 Dec 2026 22:00:30 GMT", "Sun, 06 Dec 2026 22:00:00 GMT", 30.0),
    ("Sun, 06 Dec 2026 21:59:00 GMT", "Sun, 06 Dec 2026 22:00:00 GMT", 0.0),   # in the past: at once
    ("Wed, 21 Oct 2015 07:28:00 GMT", "not a date", 0.0),                       # our clock, long past
])
def test_retry_after_as_an_http_date(value, date, seconds):
    assert parse_retry_after(value, date) == pytest.approx(seconds)


def test_retry_after_date_without_a_date_header_is_read_against_our_clock():
    from email.utils import formatdate
    import time
    wait = parse_retry_after(formatdate(time.time() + 120, usegmt=True))
    assert 100 < wait <= 120


def test_snippet_shows_the_start_of_a_body_on_one_line():
    assert snippet(b"") == "empty" and snippet(b"   \n") == "empty"
    assert snippet(b"<html>\n<body>oops</body>") == repr("<html> <body>oops</body>")
    assert snippet(b"a" * 100) == repr("a" * 60)
    assert snippet(b"\xff\xfe bad utf-8") == repr("\ufffd\ufffd bad utf-8")


# -- through the client: the key refused by message, not by status ------------------------------------

@pytest.mark.parametrize("status", [200, 400])
async def test_a_key_refused_by_message_stops_every_request_after_the_first(status):
    seen = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"statusCode": 4011, "message": "Invalid API key", "body": None}, status=status)

    app = web.Application()
    app.router.add_post("/api/v2/uploadImageUrl", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with Wire() as session:
            client = Client(session, str(server.make_url("/api")), "a-key-0123456789abcdef",
                            retries=RetrySettings(transient=3, backoff_base_s=0.01, backoff_max_s=0.05))
            first = await asyncio.gather(client.upload_slot(10, "image/jpeg"), return_exceptions=True)
            later = await asyncio.gather(*(client.upload_slot(10, "image/jpeg") for _ in range(5)),
                                         return_exceptions=True)
    finally:
        await server.close()
    assert isinstance(first[0], AuthError) and str(first[0]) == "API key rejected (statusCode 4011: Invalid API key)"
    assert all(isinstance(e, AuthError) for e in later)
    assert seen == ["/api/v2/uploadImageUrl"]  # once refused, the key is never sent again
