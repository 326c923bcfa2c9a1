"""Injected faults: a registry of kinds, which endpoints each applies to, and its response.

A fault is drawn before the request is handled, so a faulted request has no effect:
no upload slot, no stored bytes, no order, no status check counted. Most kinds answer instead of
the handler (``respond``); a kind that ``spoils`` lets the request be handled and then corrupts a
successful answer (it is counted only when there was one to corrupt).

    kind        rate field        endpoints
    reset       rate_reset        upload_url submit status put output
    5xx         rate_5xx          upload_url submit status put output (S3 XML on put/output)
    429         rate_429          upload_url submit status
    garbage     rate_garbage      upload_url submit status output (HTML page on output)
    bad_status  rate_bad_status   upload_url submit status
    5000        rate_5000         upload_url submit status (HTTP 200, statusCode 5000 INTERNAL_SERVER_ERROR)
    truncated   rate_truncated    output (200, first half of the JPEG, its own Content-Length/ETag)

An incident (``outage_s`` after ``outage_after`` API requests) answers every API request for that
long, before the handler: with statusCode 5000 in an HTTP 200 like ``rate_5000`` (``outage_kind``
"5000"), with a gateway's 503 page ("503"), or by dropping the connection ("reset").

The cdn (imageUrl) GET and the ``__`` admin routes never fault.
"""
from __future__ import annotations

import hashlib
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.presign import s3_error

API = frozenset({"upload_url", "submit", "status"})
STORAGE = frozenset({"put", "output"})


class ConnectionReset(Exception):
    """Raised after the transport was aborted; the middleware turns it into no response."""


def lightx_json(http_status: int, status_code: int, message: str, body=None,
                headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"statusCode": status_code, "message": message, "body": body},
                             status=http_status, headers=headers)


def _gateway_page(code: int, reason: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head><body>"
            f"<center><h1>{code} {reason}</h1></center><hr><center>nginx</center></body></html>\n")


def outage_answer(request: web.Request, options: SandboxOptions) -> web.Response:
    """What an API request gets during the --outage-s incident, as --outage-kind says."""
    if options.outage_kind == "503":
        return web.Response(status=503, content_type="text/html",
                            text=_gateway_page(503, "Service Temporarily Unavailable"))
    if options.outage_kind == "reset":
        return _reset(request, None, options)
    return lightx_json(200, 5000, "INTERNAL_SERVER_ERROR")


def _reset(request: web.Request, rng: random.Random | None, options: SandboxOptions) -> web.Response:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0 makes close() send RST, as a dropped connection does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise ConnectionReset()


def _server_error(request: web.Request, rng: random.Random, options: SandboxOptions) -> web.Response:
    code = rng.choice((500, 502, 503))
    if request.match_info.route.name in STORAGE:
        s3_code = "InternalError" if code == 500 else "SlowDown"
        return web.Response(status=503 if code != 500 else 500, content_type="application/xml",
                            text=s3_error(s3_code, "Please reduce your request rate."
                                          if s3_code == "SlowDown" else "We encountered an internal error."))
    if code == 500:
        return lightx_json(500, 5000, "Internal Server Error")
    reason = "Bad Gateway" if code == 502 else "Service Temporarily Unavailable"
    return web.Response(status=code, content_type="text/html", text=_gateway_page(code, reason))


def _too_many(request: web.Request, rng: random.Random, options: SandboxOptions) -> web.Response:
    after = options.retry_after_s
    # Whole seconds as HTTP says; fractions are kept so that fast tests can use them.
    value = str(int(after)) if float(after).is_integer() else f"{after:g}"
    return lightx_json(429, 4290, "Too Many Requests", headers={"Retry-After": value})


def _garbage(request: web.Request, rng: random.Random, options: SandboxOptions) -> web.Response:
    if request.match_info.route.name in STORAGE or rng.random() < 0.5:
        return web.Response(status=200, content_type="text/html",
                            text=_gateway_page(200, "Please wait while we check your browser"))
    return web.Response(status=200, content_type="application/json",
                        text='{"statusCode": 2000, "message": "SUCC')


def _bad_status(request: web.Request, rng: random.Random, options: SandboxOptions) -> web.Response:
    return lightx_json(200, 5001, "INTERNAL_ERROR")


def _internal_error(request: web.Request, rng: random.Random, options: SandboxOptions) -> web.Response:
    # As the incident showed it: LightX's own server fault in an HTTP 200. Drawn before the
    # handler, so a submit answered so created no order (see docs/resilience.md on what that assumes).
    return lightx_json(200, 5000, "INTERNAL_SERVER_ERROR")


def _truncate(response: web.StreamResponse) -> web.Response | None:
    """The first half of a served JPEG, as a cut object in storage would be served: it starts like
    a JPEG and its headers match its bytes, but it does not decode."""
    body = getattr(response, "body", None)
    if response.status != 200 or not isinstance(body, bytes) or len(body) < 2:
        return None
    cut = body[:len(body) // 2]
    return web.Response(body=cut, content_type=response.content_type,
                        headers={"ETag": f'"{hashlib.md5(cut).hexdigest()}"'})


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: either ``respond`` (answer instead of the handler) or ``spoil``."""

    name: str
    rate_field: str
    endpoints: frozenset[str]
    respond: Callable[[web.Request, random.Random, SandboxOptions], web.Response] | None = None
    spoil: Callable[[web.StreamResponse], web.StreamResponse | None] | None = None


FAULTS: tuple[FaultKind, ...] = (
    FaultKind("reset", "rate_reset", API | STORAGE, _reset),
    FaultKind("5xx", "rate_5xx", API | STORAGE, _server_error),
    FaultKind("429", "rate_429", API, _too_many),
    FaultKind("garbage", "rate_garbage", API | {"output"}, _garbage),
    FaultKind("bad_status", "rate_bad_status", API, _bad_status),
    FaultKind("5000", "rate_5000", API, _internal_error),
    FaultKind("truncated", "rate_truncated", frozenset({"output"}), spoil=_truncate),
)


def in_outage(endpoint: str, options: SandboxOptions, ledger) -> bool:
    """Whether an API request falls in the --outage-s incident (which begins after --outage-after of them)."""
    if options.outage_s <= 0 or endpoint not in API:
        return False
    if ledger.outage_started is None:
        if sum(ledger.requests[e] for e in API) <= options.outage_after:
            return False
        ledger.outage_started = time.monotonic()
    return time.monotonic() - ledger.outage_started < options.outage_s


def draw_fault(endpoint: str, options: SandboxOptions, rng: random.Random) -> FaultKind | None:
    """One roll per request; each kind's rate is its share of that endpoint's requests."""
    kinds = [(k, getattr(options, k.rate_field)) for k in FAULTS if endpoint in k.endpoints]
    if not any(rate > 0 for _, rate in kinds):
        return None
    roll, edge = rng.random(), 0.0
    for kind, rate in kinds:
        edge += rate
        if roll < edge:
            return kind
    return None
