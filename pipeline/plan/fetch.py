"""Download a manifest's remote image (LightX rejects external URLs), with a cache keyed by URL.

    >>> fetched = await fetch_image(session, "https://shop.example/shoe.jpg", state_dir / "remote")
    >>> fetched.from_cache
    False

This module is the only place aiohttp/asyncio errors are caught while fetching; they become FetchError.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from yarl import URL

from pipeline.store.atomic import write_atomically
from pipeline.errors import OutputError
from pipeline.inputs.locations import HTTP_SCHEMES
from pipeline.media.formats import sniff_format

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that would leak the LightX key (or any credential) to a third-party host.
CREDENTIAL_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """A remote image could not be fetched; the message is one human line."""


@dataclass(frozen=True)
class Fetched:
    """A downloaded (or cached) image body and the ETag it was served with."""

    data: bytes
    etag: str | None
    from_cache: bool


@dataclass(frozen=True)
class _Cached:
    data: bytes
    etag: str | None


async def fetch_image(session: aiohttp.ClientSession, url: str, cache_dir: Path, *,
                      timeout_s: float = 30.0, max_bytes: int = 50 * 1024 * 1024,
                      max_redirects: int = 5) -> Fetched:
    """Fetch ``url``, revalidating by ETag; if the host is unreachable or times out, serve the cached copy."""
    target = _checked_url(url, redirect=False)
    _refuse_credentials(session)
    cache = _CacheEntry(cache_dir, url)
    # Bodies can be tens of MB; hashing and file IO stay off the event loop.
    cached = await asyncio.to_thread(cache.read)
    try:
        async with asyncio.timeout(timeout_s):
            result = await _download(session, target, cached, max_bytes, max_redirects, timeout_s)
    except TimeoutError as exc:
        failure: Exception = exc
        reason = f"timed out after {timeout_s:g} s"
    except aiohttp.ClientError as exc:
        failure = exc
        reason = _describe(exc)
    else:
        if not result.from_cache or result.etag != (cached.etag if cached else None):
            await asyncio.to_thread(cache.write, result.data, result.etag)
        return result
    if cached is not None:
        log.warning("using cached copy of %s: %s", _redacted(target), reason)
        return Fetched(cached.data, cached.etag, from_cache=True)
    raise FetchError(reason) from failure


async def _download(session: aiohttp.ClientSession, target: URL, cached: _Cached | None,
                    max_bytes: int, max_redirects: int, timeout_s: float) -> Fetched:
    """Follow redirects by hand (so each hop's scheme is checked) and read the body under the cap."""
    headers = {"Accept": "image/*"}
    if cached is not None and cached.etag:
        headers["If-None-Match"] = cached.etag
    for _ in range(max_redirects + 1):
        async with session.get(target, headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {resp.status} redirect without a Location header")
                target = _checked_url(target.join(URL(location)), redirect=True)
                continue
            if resp.status == 304 and cached is not None:
                return Fetched(cached.data, resp.headers.get("ETag") or cached.etag, from_cache=True)
            if not 200 <= resp.status < 300:
                raise FetchError(f"HTTP {resp.status} {resp.reason or ''}".rstrip())
            data = await _read_capped(resp, max_bytes)
            if sniff_format(data) is None:
                declared = resp.headers.get("Content-Type", "no content type")
                raise FetchError(f"not an image ({len(data)} bytes, server said {declared})")
            return Fetched(data, resp.headers.get("ETag"), from_cache=False)
    raise FetchError(f"too many redirects (more than {max_redirects})")


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read the body, refusing as soon as it is known or seen to exceed ``max_bytes``."""
    too_big = FetchError(f"remote image larger than {max_bytes} bytes")
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise too_big
    # Checked while streaming too: chunked bodies have no length, and gzip can expand past it.
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


def _checked_url(url: str | URL, *, redirect: bool) -> URL:
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError) as exc:
        raise FetchError(f"invalid URL ({exc})") from exc
    scheme = parsed.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        prefix = "redirect to " if redirect else ""
        raise FetchError(f"{prefix}unsupported URL scheme '{scheme}'")
    if not parsed.host:
        raise FetchError("invalid URL (no host)")
    return parsed


def _refuse_credentials(session: aiohttp.ClientSession) -> None:
    # A session's default headers go with every request, so a key set there would reach the image host.
    leaked = sorted(name.lower() for name in session.headers if name.lower() in CREDENTIAL_HEADERS)
    if leaked or session.auth is not None:
        raise ValueError(f"fetch session carries credentials ({', '.join(leaked) or 'auth'}); use a bare session")


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({_one_line(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "download interrupted (body incomplete)"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    return f"download failed ({_one_line(exc)})"


def _redacted(url: URL) -> str:
    # Query strings often carry signatures (S3, CDN tokens); keep them out of logs.
    return str(url.with_query(None).with_fragment(None))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _CacheEntry:
    """One URL's cached body and meta in ``cache_dir``; the meta is written last and vouches for the body."""

    def __init__(self, cache_dir: Path, url: str):
        self.url = url
        self.dir = Path(cache_dir)
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        self.body_path = self.dir / f"{key}.body"
        self.meta_path = self.dir / f"{key}.json"

    def read(self) -> _Cached | None:
        try:
            meta = json.loads(self.meta_path.read_text("utf-8"))
            data = self.body_path.read_bytes()
        except (OSError, ValueError):
            return None
        # A crash between the two renames, or a hash collision in the name, must not serve wrong bytes.
        if not isinstance(meta, dict) or meta.get("url") != self.url:
            return None
        if meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        etag = meta.get("etag")
        return _Cached(data, etag if isinstance(etag, str) else None)

    def write(self, data: bytes, etag: str | None) -> None:
        meta = {
            "url": self.url,
            "etag": etag,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        try:
            write_atomically(self.body_path, data)
            write_atomically(self.meta_path, json.dumps(meta, indent=2).encode("utf-8"))
        except OutputError as exc:
            # The download itself succeeded; a cache we cannot write only costs a refetch next run.
            log.warning("could not cache %s: %s", _redacted(URL(self.url)), exc)
