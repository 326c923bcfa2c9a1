"""A fault-injecting HTTP proxy for an S3 server (moto's), on 127.0.0.1: random 503 SlowDown, 500
InternalError and connection resets on a share of calls, and storms during which every call (or every
call a predicate picks) is refused: with 503 SlowDown, or (`storm_kind`) 500, a reset, or an answer that
never comes (the connection held open, silent, until the storm ends).

    with FaultProxy(s3_endpoint, rate=0.17, seed=1, storm_s=3.0, storm_when=first_output_put) as proxy:
        ... point AWS_ENDPOINT_URL at proxy.url ...
    proxy.stats      # Counter: calls, forwarded, 503, 500, reset, storm (and "storm reset" ... by kind)

Written for the tests and for the by-hand storm of docs/resilience.md (benchmarks/s3_storm.py); the
faults are drawn before the call is forwarded, so a refused call has no effect on the bucket.
"""
from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


def s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>fault-proxy</RequestId></Error>").encode()


SLOW_DOWN = s3_error("SlowDown", "Please reduce your request rate.")
INTERNAL = s3_error("InternalError", "We encountered an internal error. Please try again.")


STORM_KINDS = ("503", "500", "reset", "silent")  # what every call gets during a storm


class FaultProxy:
    """Forwards every call to `upstream`, except those it refuses (see the module's docstring).

    `storm_when(method, path)` starts a storm of `storm_s` seconds the first time it is true of a call
    (that call is refused too); `refuse(method, path)`, while true of a call, refuses it with 503
    SlowDown for good (a bucket that never takes some writes). `retry_after` is sent with storm answers."""

    def __init__(self, upstream: str, *, rate: float = 0.0, seed: int = 0, storm_s: float = 0.0,
                 storm_when: Callable[[str, str], bool] | None = None,
                 refuse: Callable[[str, str], bool] | None = None, retry_after: float | None = None,
                 storm_kind: str = "503"):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.rate, self.storm_s, self.storm_when, self.refuse = rate, storm_s, storm_when, refuse
        self.retry_after = retry_after
        if storm_kind not in STORM_KINDS:
            raise ValueError(f"storm_kind: one of {', '.join(STORM_KINDS)}, not {storm_kind!r}")
        self.storm_kind = storm_kind
        self.rng = random.Random(seed)
        self.stats: Counter = Counter()
        self.storm_started: float | None = None
        self.storm_ended: float | None = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy._handle(self)
            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- one call ------------------------------------------------------------------------------

    def _verdict(self, method: str, path: str) -> str | None:
        """None to forward, else the fault: "storm", "refused", "503", "500" or "reset"."""
        with self._lock:
            self.stats["calls"] += 1
            now = time.monotonic()
            if self.storm_started is None and self.storm_when is not None and self.storm_when(method, path):
                self.storm_started, self.storm_ended = now, now + self.storm_s
            if self.storm_started is not None and now < self.storm_ended:
                return "storm"
            if self.refuse is not None and self.refuse(method, path):
                return "refused"
            if self.rng.random() < self.rate:
                return self.rng.choice(("503", "500", "reset"))
            return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        method, path = handler.command, handler.path
        fault = self._verdict(method, path)
        with self._lock:
            self.stats[fault or "forwarded"] += 1
        if fault == "storm" and self.storm_kind != "503":
            with self._lock:
                self.stats[f"storm {self.storm_kind}"] += 1
            if self.storm_kind == "silent":  # no answer while the storm lasts, then the connection drops
                time.sleep(max(0.0, self.storm_ended - time.monotonic()))
                fault = "reset"
            else:
                fault = self.storm_kind
        if fault == "reset":
            # SO_LINGER 0: close() sends RST, as a dropped connection does.
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        if fault is not None:
            status, text = (500, INTERNAL) if fault == "500" else (503, SLOW_DOWN)
            headers = {"Content-Type": "application/xml"}
            if fault == "storm" and self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            _answer(handler, status, headers, text)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            _answer(handler, resp.status, {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP},
                    data, length=resp.getheader("Content-Length") if method == "HEAD" else None)
        finally:
            conn.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _answer(handler: BaseHTTPRequestHandler, status: int, headers: dict, body: bytes,
            length: str | None = None) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    head = handler.command == "HEAD"
    handler.send_header("Content-Length", length if head and length is not None else str(len(body)))
    handler.end_headers()
    if not head:
        handler.wfile.write(body)
