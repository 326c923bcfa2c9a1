"""A store's picture host in the sandbox (`GET /pictures/<name>`), which can misbehave as a CDN does.

    curl http://127.0.0.1:8787/pictures/p7.jpg     # product 7, drawn (products.draw), 256 px JPEG

`--pictures-fault` makes it: `silent` (the connection accepted, never an answer), `stall` (the head
and half the picture, then nothing), `5xx` (503 Service Unavailable), `reset` (the connection reset);
`--pictures-fault-first N` only for the first N picture requests, then it recovers. The ledger counts
`requests["pictures"]` and `faults["pictures"]`. A store export whose picture URLs point here tries
`plan/pictures.py` by hand (docs/sandbox.md).
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from pipeline.sandbox.faults import ConnectionReset, _reset
from pipeline.sandbox.products import draw
_NUMBER = re.compile(r"(\d+)")


@lru_cache(maxsize=256)
def picture(name: str) -> bytes:
    """The JPEG a name stands for: the product numbered in it (p7.jpg is 7), else one of its hash."""
    found = _NUMBER.search(name)
    index = int(found.group(1)) if found else int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    with tempfile.TemporaryDirectory() as tmp:
        return draw(Path(tmp) / "p.jpg", index, size=256).read_bytes()


async def get_picture(request: web.Request, state) -> web.StreamResponse:
    """A picture, or the fault the options ask for (a silent or stalled answer lasts until the client
    hangs up)."""
    options, ledger = state.options, state.ledger
    ledger.requests["pictures"] += 1
    body = picture(request.match_info["name"])
    limit = options.pictures_fault_first
    if options.pictures_fault is None or (limit is not None and ledger.requests["pictures"] > limit):
        return web.Response(body=body, content_type="image/jpeg")
    ledger.faults["pictures"] += 1
    fault = options.pictures_fault
    if fault == "5xx":
        return web.Response(status=503, text="Service Unavailable")
    if fault == "reset":
        try:
            return _reset(request, state.fault_rng, options)
        except ConnectionReset:
            raise asyncio.CancelledError() from None  # the transport is gone: nothing is written
    if fault == "silent":
        await _until_hung_up(request)
        raise asyncio.CancelledError()  # nothing to answer: the client is gone
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    await _until_hung_up(request)
    raise asyncio.CancelledError()


async def _until_hung_up(request: web.Request) -> None:
    """Say nothing more until the client hangs up (aiohttp does not cancel a handler when it does)."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.05)
