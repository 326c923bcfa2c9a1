"""HTTP/1.1 for the LightX client: keep-alive connections on asyncio protocols, answers parsed by httptools.

    async with Wire(limit=100) as wire:
        answer = await wire.request("POST", url, body=b"{}", headers={"x-api-key": key})
        answer.status, answer.headers["content-type"], answer.body

Why not aiohttp for these calls: an item needs five requests, and aiohttp's request machinery (its
session, timers, multidicts and streams) cost 0.17-0.33 ms of CPU per request here where this costs
0.08-0.14 (`benchmarks/http_floor.py --client both`). The parsing is httptools' (llhttp, the parser
aiohttp itself uses); what is ours is the framing, the pool and the timeouts.

What it does: http and https (the default SSL context), Content-Length, chunked and close-delimited
answers, gzip/deflate if a server sends them unasked, redirects when asked, a cap on an answer's
size, one deadline per request (connecting included), at most `limit` requests on the wire at once.
What it does not: proxies (the aiohttp session it replaces did not read them either), HTTP/2, cookies.

Every failure is a ConnectionError (CannotConnect, Disconnected, BadAnswer), TimeoutError, or TooBig.
"""
from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import httptools

from pipeline.version import VERSION

MAX_REDIRECTS = 10
IDLE_S = 15.0  # a connection idle longer is closed, not reused: servers close theirs after 5-60 s
USER_AGENT = f"lightx-pipeline/{VERSION}"
ONE_WRITE = 256 * 1024  # a body up to this size is sent with its head in one write
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # what stays as it is in a request target: a signed URL's bytes are its signature


class CannotConnect(ConnectionError):
    """No connection to the server: DNS, refused, unreachable, TLS handshake."""


class Disconnected(ConnectionError):
    """The connection closed or reset before the whole answer came."""


class BadAnswer(ConnectionError):
    """The server's bytes are not HTTP/1.1, or its redirects do not end."""


class TooBig(Exception):
    """An answer over the request's byte cap; `size` is its Content-Length, or None if it has none."""

    def __init__(self, size: int | None):
        super().__init__(size)
        self.size = size


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    url: str  # after redirects


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: str


class _Connection(asyncio.Protocol):
    """One socket; at most one exchange at a time. The parser's callbacks fill the waiting future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.reusable_until = 0.0  # the loop's time after which an idle connection is not reused
        self._reset(8 * 1024 * 1024)

    def _reset(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.keep = False

    # -- the exchange's side ---------------------------------------------------------------------

    def begin(self, waiter: asyncio.Future, max_bytes: int) -> None:
        self._reset(max_bytes)
        self.waiter = waiter

    def usable(self, now: float) -> bool:
        return self.transport is not None and not self.transport.is_closing() and now < self.reusable_until

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def expire(self) -> None:
        self._fail(TimeoutError("timed out"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        self.keep = False
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- asyncio's side --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is not usable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None:  # not a failure of our own callback's
                self._fail(BadAnswer(f"not an HTTP/1.1 answer ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is None:
            return
        if exc is None and self.headers_done and "content-length" not in self.headers \
                and "chunked" not in self.headers.get("transfer-encoding", "").lower():
            self._complete()  # an answer whose end is the connection's end
        else:
            self._fail(Disconnected("the server closed the connection" if exc is None
                                    else f"connection lost: {type(exc).__name__}"))

    # -- httptools' callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        length = self.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            self._fail(TooBig(int(length)))

    def on_body(self, body: bytes) -> None:
        if self.waiter is None:
            return
        self.size += len(body)
        if self.size > self.max_bytes:
            self._fail(TooBig(None))
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and its kin: the answer is still to come
            self._reset(self.max_bytes)
            return
        self.keep = self.parser.should_keep_alive()
        self._complete()

    def _complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.headers, b"".join(self.chunks)))


class Wire:
    """A pool of keep-alive HTTP/1.1 connections, one list of idle ones per origin."""

    def __init__(self, limit: int = 100, *, user_agent: str = USER_AGENT, idle_s: float = IDLE_S,
                 ssl_context: ssl.SSLContext | None = None):
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._origins: dict[tuple[str, str], _Origin] = {}
        self._ssl = ssl_context  # None: the system's trust store (SSL_CERT_FILE honoured), made at first use
        self._user_agent = user_agent
        self._idle_s = idle_s
        self._closed = False

    async def __aenter__(self) -> "Wire":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle_count = 0
        await asyncio.sleep(0)  # let the transports' close callbacks run on this loop

    async def request(self, method: str, url: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout_s: float = 60.0, connect_s: float = 10.0,
                      redirects: bool = False, max_bytes: int = 8 * 1024 * 1024) -> Answer:
        """One exchange (following redirects if asked), within `timeout_s` in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            origin, target = self._target(url)
            status, got, data = await self._exchange(loop, origin, method, target, body, headers or {},
                                                     deadline, connect_s, max_bytes)
            location = got.get("location")
            if not redirects or status not in _REDIRECTS or not location:
                return Answer(status, got, _decoded(got, data, max_bytes), url)
            url = urljoin(url, location)
            if not url.startswith(("http://", "https://")):  # the caller refuses it, by its URL
                return Answer(status, got, b"", url)
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        raise BadAnswer(f"more than {MAX_REDIRECTS} redirects")

    # -- machinery ---------------------------------------------------------------------------------

    def _target(self, url: str) -> tuple[_Origin, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise CannotConnect(f"not an http(s) URL: {scheme or '?'}:")
        origin = self._origins.get((scheme, parts.netloc))
        if origin is None:
            default = 443 if scheme == "https" else 80
            try:
                port = parts.port or default
                host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode()
            except (ValueError, UnicodeError):
                raise CannotConnect(f"not a usable host and port: {parts.netloc!r}") from None
            shown = f"[{host}]" if ":" in host else host
            origin = self._origins[(scheme, parts.netloc)] = _Origin(
                scheme, host, port, shown if port == default else f"{shown}:{port}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if not target.isascii() or not target.isprintable() or " " in target:
            target = quote(target, safe=_SAFE)
        return origin, target

    async def _exchange(self, loop: asyncio.AbstractEventLoop, origin: _Origin, method: str, target: str,
                        body: bytes | None, headers: dict[str, str], deadline: float, connect_s: float,
                        max_bytes: int) -> tuple[int, dict[str, str], bytes]:
        head = self._head(origin, method, target, body, headers)
        if self._slots.locked():
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - loop.time()))
        else:
            await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._reuse(origin, loop.time())
            if conn is None:
                conn = await self._connect(loop, origin, min(connect_s, deadline - loop.time()))
            transport = conn.transport
            if transport is None:  # closed by the server between its accept and this write
                raise Disconnected("the server closed the connection")
            waiter = loop.create_future()
            conn.begin(waiter, max_bytes)
            timer = loop.call_at(deadline, conn.expire)
            try:
                if body and len(body) <= ONE_WRITE:
                    transport.write(head + body)  # one send, not two: a small copy costs less than a syscall
                else:
                    transport.write(head)
                    if body:
                        transport.write(body)
                answer = await waiter
            finally:
                timer.cancel()
            if conn.keep and not self._closed and not transport.get_write_buffer_size():
                # (a server that answered before reading all of a body leaves the rest unsent: not reused)
                self._park(origin, conn, loop.time(), answer[1].get("keep-alive"))
                conn = None
            return answer
        finally:
            if conn is not None:  # not parked: failed, cancelled, or the server said close
                conn.close()
            self._slots.release()

    def _head(self, origin: _Origin, method: str, target: str, body: bytes | None,
              headers: dict[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\nUser-Agent: {self._user_agent}\r\n"
                 "Accept: */*\r\nAccept-Encoding: identity\r\n"]
        for name, value in headers.items():
            if name.lower() == "content-length":
                continue
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"HTTP header {name!r} has a line break")
            lines.append(f"{name}: {value}\r\n")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _reuse(self, origin: _Origin, now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def _park(self, origin: _Origin, conn: _Connection, now: float, keep_alive: str | None) -> None:
        if self._idle_count >= self._limit:  # idle sockets stay within the limit too
            conn.close()
            return
        idle_s = self._idle_s
        if keep_alive:  # "timeout=5, max=100": the server closes idle connections after 5 s; stop 1 s short
            for part in keep_alive.split(","):
                name, _, value = part.strip().partition("=")
                if name.lower() == "timeout" and value.strip().isdigit():
                    idle_s = min(idle_s, max(0.0, int(value) - 1.0))
        conn.reusable_until = now + idle_s
        self._idle.setdefault(origin, deque()).append(conn)
        self._idle_count += 1

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: _Origin, timeout_s: float) -> _Connection:
        tls = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, origin.host, origin.port, ssl=tls,
                                       server_hostname=origin.host if tls else None),
                max(0.0, timeout_s))
        except asyncio.TimeoutError:
            raise TimeoutError("timed out connecting") from None
        except OSError as exc:  # DNS, refused, unreachable, a certificate refused
            raise CannotConnect(f"cannot connect to {origin.host_header}: {type(exc).__name__}") from exc
        return conn


def _decoded(headers: dict[str, str], data: bytes, max_bytes: int) -> bytes:
    """The body as sent, or un-gzipped/inflated if the server chose to compress it unasked."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity") or not data:
        return data
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise BadAnswer(f"answer in an unknown content-encoding {coding!r}")
    attempts = (zlib.MAX_WBITS | 32,) if coding != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in attempts:  # "deflate" is zlib-wrapped by the standard, raw by some servers
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, max_bytes + 1)
        except zlib.error:
            continue
        if len(out) > max_bytes:
            raise TooBig(None)
        return out
    raise BadAnswer(f"answer's {coding} body does not decode")
