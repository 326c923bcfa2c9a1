"""Remote images: fetched from a loopback server, capped, sniffed, redirect-checked and cached."""
from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from helpers import jpeg_bytes
from pipeline.plan.fetch import FetchError, Fetched, fetch_image

ETAG = '"v1"'
CAP = 100_000
SEEN = web.AppKey("seen", list)  # (path, headers) of every request, to check what the fetcher sent
RELEASE = web.AppKey("release", asyncio.Event)  # lets /slow answer, so teardown is quick
ANSWER = web.AppKey("answer", list)  # [an HTTP status /img.jpg answers with instead of the image, or None]


JPEG = jpeg_bytes((8, 8), (200, 10, 10), product=False)


def make_app() -> web.Application:
    app = web.Application()
    app[SEEN] = []
    app[RELEASE] = asyncio.Event()
    app[ANSWER] = [None]

    @web.middleware
    async def record(request, handler):
        app[SEEN].append((request.path, dict(request.headers)))
        return await handler(request)

    async def image(request):
        if app[ANSWER][0] is not None:
            return web.Response(status=app[ANSWER][0])
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(body=JPEG, content_type="image/jpeg", headers={"ETag": ETAG})

    async def no_etag(request):
        return web.Response(body=JPEG, content_type="application/octet-stream")

    async def big_declared(request):
        return web.Response(body=JPEG + b"\0" * (2 * CAP), content_type="image/jpeg")

    async def big_chunked(request):
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(2 * CAP // 16_384):
                await response.write(JPEG[:3] + b"\0" * 16_381)
        except ConnectionError:
            pass  # the client hung up once it had seen enough: that is the point
        return response

    async def html(request):
        return web.Response(body=b"<!doctype html><p>login</p>", headers={"Content-Type": "image/jpeg"})

    def redirect(status, location):
        async def handler(request):
            headers = {"Location": location} if location else {}
            return web.Response(status=status, headers=headers)
        return handler

    async def slow(request):
        await asyncio.wait_for(app[RELEASE].wait(), 5)
        return web.Response(body=JPEG)

    app.middlewares.append(record)
    app.router.add_get("/img.jpg", image)
    app.router.add_get("/no-etag", no_etag)
    app.router.add_get("/big-declared", big_declared)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/html", html)
    app.router.add_get("/to-file", redirect(302, "file:///etc/passwd"))
    app.router.add_get("/loop", redirect(302, "/loop"))
    app.router.add_get("/hop1", redirect(301, "hop2"))
    app.router.add_get("/hop2", redirect(307, "/img.jpg"))
    app.router.add_get("/no-location", redirect(302, None))
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture
async def server():
    srv = TestServer(make_app(), host="127.0.0.1")
    await srv.start_server()
    yield srv
    srv.app[RELEASE].set()
    await srv.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "remote"


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def test_image_is_downloaded_and_cached(server, session, cache_dir):
    target = url(server, "/img.jpg")
    fetched = await fetch_image(session, target, cache_dir)
    assert fetched == Fetched(JPEG, ETAG, from_cache=False)
    key = hashlib.sha256(target.encode()).hexdigest()
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"{key}.body", f"{key}.json"]  # no temp files left
    assert (cache_dir / f"{key}.body").read_bytes() == JPEG
    meta = json.loads((cache_dir / f"{key}.json").read_text())
    assert meta["url"] == target and meta["etag"] == ETAG and meta["fetched_at"]


async def test_etag_revalidation_uses_the_cache_on_304(server, session, cache_dir):
    target = url(server, "/img.jpg")
    await fetch_image(session, target, cache_dir)
    fetched = await fetch_image(session, target, cache_dir)
    assert fetched == Fetched(JPEG, ETAG, from_cache=True)
    (_, first), (_, second) = server.app[SEEN]
    assert "If-None-Match" not in first and second["If-None-Match"] == ETAG


async def test_body_is_sniffed_not_trusted_from_content_type(server, session, cache_dir):
    fetched = await fetch_image(session, url(server, "/no-etag"), cache_dir)
    assert fetched.data == JPEG and fetched.etag is None


async def test_no_credentials_are_sent(server, session, cache_dir):
    await fetch_image(session, url(server, "/img.jpg"), cache_dir)
    sent = {name.lower() for name in server.app[SEEN][0][1]}
    assert not sent & {"x-api-key", "authorization", "cookie"}


async def test_a_session_carrying_a_key_is_refused(server, cache_dir):
    async with aiohttp.ClientSession(headers={"X-Api-Key": "secret"}) as keyed:
        with pytest.raises(ValueError, match="x-api-key"):
            await fetch_image(keyed, url(server, "/img.jpg"), cache_dir)
    assert server.app[SEEN] == []


async def test_redirects_are_followed(server, session, cache_dir):
    fetched = await fetch_image(session, url(server, "/hop1"), cache_dir)
    assert fetched.data == JPEG
    assert [path for path, _ in server.app[SEEN]] == ["/hop1", "/hop2", "/img.jpg"]


@pytest.mark.parametrize("path, kwargs, message", [
    ("/big-declared", {"max_bytes": CAP}, f"^remote image larger than {CAP} bytes$"),
    ("/big-chunked", {"max_bytes": CAP}, f"^remote image larger than {CAP} bytes$"),
    ("/html", {}, r"^not an image \(27 bytes, server said image/jpeg\)$"),
    ("/to-file", {}, r"^redirect to unsupported URL scheme 'file'$"),
    ("/loop", {"max_redirects": 3}, r"^too many redirects \(more than 3\)$"),
    ("/no-location", {}, "^HTTP 302 redirect without a Location header$"),
    ("/missing", {}, "^HTTP 404 Not Found$"),
    ("/slow", {"timeout_s": 0.2}, r"^timed out after 0.2 s$"),
])
async def test_bad_responses_are_fetch_errors(server, session, cache_dir, path, kwargs, message):
    with pytest.raises(FetchError, match=message):
        await fetch_image(session, url(server, path), cache_dir, **kwargs)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


async def test_redirect_loop_stops_at_the_limit(server, session, cache_dir):
    with pytest.raises(FetchError, match="too many redirects"):
        await fetch_image(session, url(server, "/loop"), cache_dir, max_redirects=5)
    assert len(server.app[SEEN]) == 6


async def test_oversize_with_content_length_is_refused_before_reading(server, session, cache_dir):
    with pytest.raises(FetchError, match="larger than 10 bytes"):
        await fetch_image(session, url(server, "/img.jpg"), cache_dir, max_bytes=10)


@pytest.mark.parametrize("target, message", [
    ("ftp://example.com/a.jpg", "^unsupported URL scheme 'ftp'$"),
    ("file:///etc/passwd", "^unsupported URL scheme 'file'$"),
    ("data:image/png;base64,AAAA", "^unsupported URL scheme 'data'$"),
    ("http:///no-host.jpg", r"^invalid URL \(no host\)$"),
])
async def test_non_http_urls_are_refused_without_a_request(session, cache_dir, target, message):
    with pytest.raises(FetchError, match=message):
        await fetch_image(session, target, cache_dir)


async def test_server_down_serves_the_cached_copy(session, cache_dir):
    srv = TestServer(make_app(), host="127.0.0.1")
    await srv.start_server()
    target = url(srv, "/img.jpg")
    assert not (await fetch_image(session, target, cache_dir)).from_cache
    await srv.close()
    assert await fetch_image(session, target, cache_dir) == Fetched(JPEG, ETAG, from_cache=True)
    with pytest.raises(FetchError, match="^cannot connect to 127.0.0.1"):
        await fetch_image(session, target, cache_dir / "empty")


async def test_timeout_serves_the_cached_copy(server, session, cache_dir):
    target = url(server, "/slow")
    server.app[RELEASE].set()
    await fetch_image(session, target, cache_dir)
    server.app[RELEASE].clear()
    fetched = await fetch_image(session, target, cache_dir, timeout_s=0.2)
    assert fetched.from_cache and fetched.data == JPEG


async def test_a_corrupt_cache_entry_is_ignored(server, session, cache_dir):
    target = url(server, "/img.jpg")
    await fetch_image(session, target, cache_dir)
    body = cache_dir / f"{hashlib.sha256(target.encode()).hexdigest()}.body"
    body.write_bytes(b"tampered")
    fetched = await fetch_image(session, target, cache_dir)
    assert fetched == Fetched(JPEG, ETAG, from_cache=False)
    assert "If-None-Match" not in server.app[SEEN][-1][1]
    assert body.read_bytes() == JPEG


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_http_refusals_do_not_fall_back_to_the_cache(server, session, cache_dir, status):
    target = url(server, "/img.jpg")
    assert not (await fetch_image(session, target, cache_dir)).from_cache  # cached now
    server.app[ANSWER][0] = status  # the host answers, and refuses: the item must fail, not use the copy
    with pytest.raises(FetchError, match=f"^HTTP {status} "):
        await fetch_image(session, target, cache_dir)
    assert server.app[SEEN][-1][0] == "/img.jpg"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_host_in_trouble_serves_the_cached_copy(server, session, cache_dir, status):
    # 5xx and 429 say "later", not "gone": the copy an earlier run revalidated is the picture
    target = url(server, "/img.jpg")
    assert not (await fetch_image(session, target, cache_dir)).from_cache
    server.app[ANSWER][0] = status
    assert await fetch_image(session, target, cache_dir) == Fetched(JPEG, ETAG, from_cache=True)
    with pytest.raises(FetchError, match=f"^HTTP {status} ") as caught:
        await fetch_image(session, target, cache_dir / "empty")
    assert caught.value.transient
