"""Download a manifest's remote image (LightX rejects external URLs), with a cache keyed by URL.

    >>> fetched = await fetch_image(session, "https://shop.example/shoe.jpg", state_dir / "remote")
    >>> fetched.from_cache
    False

`fetch_once` is one try: its connect (name lookup included), its wait for the answer and for each part
of the body, and its whole length are each timed out (`Timeouts`). `plan/pictures.py` retries it,
many URLs at once. This module is the only place aiohttp/asyncio errors are caught while fetching;
they become FetchError, which says whether a later try could fix it.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from yarl import URL

from pipeline.store.atomic import write_atomically
from pipeline.errors import FetchError, OutputError  # FetchError lives there: drive imports it without aiohttp
from pipeline.inputs.locations import HTTP_SCHEMES
from pipeline.media.formats import sniff_format
from pipeline.store.retry import retry_after_s

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that would leak the LightX key (or any credential) to a third-party host.
CREDENTIAL_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
CHUNK_BYTES = 64 * 1024
# getaddrinfo's answers that mean the name does not exist (a typo, a removed CDN): no retry fixes them.
_NO_SUCH_NAME = frozenset(code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
                          if code is not None)


@dataclass(frozen=True)
class Timeouts:
    """One try's limits, in seconds: its whole length, the connection (name lookup included), and
    the longest silence: before the answer's head, and between two parts of its body."""

    total_s: float = 30.0
    connect_s: float = 10.0
    stall_s: float = 15.0

    def client(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.total_s, connect=min(self.connect_s, self.total_s),
                                     sock_read=self.stall_s if self.stall_s < self.total_s else None)


@dataclass(frozen=True)
class Fetched:
    """A downloaded (or cached) image body and the ETag it was served with."""

    data: bytes
    etag: str | None
    from_cache: bool


@dataclass(frozen=True)
class Cached:
    data: bytes
    etag: str | None


async def fetch_image(session: aiohttp.ClientSession, url: str, cache_dir: Path, *,
                      timeout_s: float = 30.0, max_bytes: int = 50 * 1024 * 1024,
                      max_redirects: int = 5) -> Fetched:
    """Fetch ``url`` once, revalidating by ETag; on a fault a later try could fix (unreachable, no
    answer, 5xx), serve the cached copy if there is one."""
    cache = CacheEntry(cache_dir, url)
    # Bodies can be tens of MB; hashing and file IO stay off the event loop.
    cached = await asyncio.to_thread(cache.read)
    timeouts = Timeouts(total_s=timeout_s, connect_s=min(10.0, timeout_s), stall_s=timeout_s)
    try:
        result = await fetch_once(session, url, cached, timeouts, max_bytes=max_bytes, max_redirects=max_redirects)
    except FetchError as exc:
        if cached is None or not (exc.transient or exc.host_down):
            raise
        log.warning("using cached copy of %s: %s", redacted(url), exc)
        return Fetched(cached.data, cached.etag, from_cache=True)
    await keep(cache, cached, result)
    return result


async def keep(cache: CacheEntry, cached: Cached | None, result: Fetched) -> None:
    """Write what was fetched to the cache, unless the cache already holds it."""
    if not result.from_cache or result.etag != (cached.etag if cached else None):
        await asyncio.to_thread(cache.write, result.data, result.etag)


async def fetch_once(session: aiohttp.ClientSession, url: str, cached: Cached | None, timeouts: Timeouts, *,
                     max_bytes: int = 50 * 1024 * 1024, max_redirects: int = 5) -> Fetched:
    """One try at ``url`` (redirects followed), each aiohttp/asyncio fault a FetchError."""
    target = _checked_url(url, redirect=False)
    _refuse_credentials(session)
    progress = _Progress()
    try:
        async with asyncio.timeout(timeouts.total_s):
            return await _download(session, target, cached, max_bytes, max_redirects, timeouts, progress)
    except TimeoutError as exc:
        # aiohttp's own timeouts are TimeoutErrors too: say which limit it was, and where the try was
        raise FetchError(_timed_out(exc, timeouts, progress), transient=True) from exc
    except aiohttp.ClientError as exc:
        raise _mapped(exc) from exc


class _Progress:
    """How far a try got, for the words of its timeout."""
    answered = False
    received = 0


async def _download(session: aiohttp.ClientSession, target: URL, cached: Cached | None,
                    max_bytes: int, max_redirects: int, timeouts: Timeouts, progress: _Progress) -> Fetched:
    """Follow redirects by hand (so each hop's scheme is checked) and read the body under the cap."""
    headers = {"Accept": "image/*"}
    if cached is not None and cached.etag:
        headers["If-None-Match"] = cached.etag
    for _ in range(max_redirects + 1):
        async with session.get(target, headers=headers, allow_redirects=False, timeout=timeouts.client()) as resp:
            progress.answered = True
            if resp.status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {resp.status} redirect without a Location header")
                target = _checked_url(target.join(URL(location)), redirect=True)
                continue
            if resp.status == 304 and cached is not None:
                return Fetched(cached.data, resp.headers.get("ETag") or cached.etag, from_cache=True)
            if not 200 <= resp.status < 300:
                raise _refused(resp)
            data = await _read_capped(resp, max_bytes, progress)
            if sniff_format(data) is None:
                declared = resp.headers.get("Content-Type", "no content type")
                raise FetchError(f"not an image ({len(data)} bytes, server said {declared})")
            return Fetched(data, resp.headers.get("ETag"), from_cache=False)
    raise FetchError(f"too many redirects (more than {max_redirects})")


def _refused(resp: aiohttp.ClientResponse) -> FetchError:
    """An answer that is not the picture: worth another try for 5xx, 429 and 408 (Retry-After read)."""
    status = resp.status
    again = status >= 500 or status in (408, 429)
    after = retry_after_s(resp.headers.get("Retry-After"), resp.headers.get("Date")) if again else None
    return FetchError(f"HTTP {status} {resp.reason or ''}".rstrip(), transient=again, retry_after=after)


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, progress: _Progress) -> bytes:
    """Read the body, refusing as soon as it is known or seen to exceed ``max_bytes``."""
    too_big = FetchError(f"remote image larger than {max_bytes} bytes")
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise too_big
    # Checked while streaming too: chunked bodies have no length, and gzip can expand past it.
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
        body += chunk
        progress.received = len(body)
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


def _mapped(exc: aiohttp.ClientError) -> FetchError:
    """One line naming the host and the fault, and whether a later try could fix it."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror) and os_error.errno in _NO_SUCH_NAME:
            return FetchError(f"host {exc.host} not found (its name does not resolve)", host_down=True)
        return FetchError(f"cannot look up host {exc.host} ({_one_line(os_error)})", transient=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return FetchError(f"cannot connect to {exc.host}:{exc.port} (connection refused)", transient=True)
        return FetchError(f"cannot connect to {exc.host}:{exc.port} ({_one_line(exc.os_error)})", transient=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError("download interrupted (body incomplete)", transient=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError("invalid URL")
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return FetchError("the server reset the connection", transient=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return FetchError("the server closed the connection without an answer", transient=True)
    transient = isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))
    return FetchError(f"download failed ({_one_line(exc)})", transient=transient)


def _timed_out(exc: TimeoutError, timeouts: Timeouts, progress: _Progress) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no connection within {min(timeouts.connect_s, timeouts.total_s):g} s"
    if isinstance(exc, aiohttp.SocketTimeoutError) and timeouts.stall_s < timeouts.total_s:
        stall = timeouts.stall_s
        if not progress.answered:
            return f"connected, but no answer within {stall:g} s"
        return f"the download stalled: nothing for {stall:g} s after {progress.received} bytes"
    return f"timed out after {timeouts.total_s:g} s"


def redacted(url: str | URL) -> str:
    # Query strings often carry signatures (S3, CDN tokens); keep them out of logs.
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return "(an invalid URL)"
    return str(parsed.with_query(None).with_fragment(None))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class CacheEntry:
    """One URL's cached body and meta in ``cache_dir``; the meta is written last and vouches for the body."""

    def __init__(self, cache_dir: Path, url: str):
        self.url = url
        self.dir = Path(cache_dir)
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        self.body_path = self.dir / f"{key}.body"
        self.meta_path = self.dir / f"{key}.json"

    def read(self) -> Cached | None:
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
        return Cached(data, etag if isinstance(etag, str) else None)

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
            log.warning("could not cache %s: %s", redacted(URL(self.url)), exc)
