"""The aiohttp application: LightX's routes, the storage routes, admin routes, fault middleware.

LightX-shaped rejections (HTTP status, statusCode, message):

    401 4010  Invalid API key                      missing or wrong x-api-key
    400 4001  <what is wrong with the request>     bad JSON, uploadType, contentType, size, prompt
    400 4002  External image URLs are not supported   imageUrl not issued by this sandbox
    400 4003  imageUrl has expired                 older than upload_ttl_s (code and message:
                                                   expired_status_code, expired_message)
    400 4004  Order not found                      unknown orderId
    400 4005  imageUrl has no uploaded image       the PUT never completed
    400 4013  PROMPT_NOT_ALLOWED                   textPrompt contains refuse_prompt (any case)
    402 4020  Insufficient credits                 credit_limit reached
    200 4006  <the input is over a tool's limit>    always as HTTP 200 status FAIL (upscale: over
                                                   2048 px a side, or over 1024 px at quality 4)

Every tool of ``pipeline.lightx.tools.TOOLS`` has its submit route, its fields checked as the
registry says (4001 naming the body field) and its output made by ``handlers.py``. An order is
found only at its tool's status route (upscale's at ``v2/order-status``, the others' at v1).

With refusals_http_200 every 400 above is sent as HTTP 200 with
``{"status": "FAIL", "statusCode", "message", "description", "body": null}``, as LightX has been seen
to answer; 401 and 402 keep their HTTP status.

Storage routes answer as S3 does, with an XML <Error>: a PUT whose signature, expiry, Host,
Content-Type, Content-Length or bytes differ from the slot gets 403 (SignatureDoesNotMatch, or
AccessDenied when expired or not a JPEG/PNG); an unknown or unfinished output gets 404 NoSuchKey.
Which routes can fault, and how, is in faults.py. `GET /pictures/<name>` is a store's picture host
(pictures.py), with faults of its own.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import warnings
from typing import Any, Callable

from aiohttp import web

from PIL import Image

from pipeline.errors import ConfigError
from pipeline.lightx.tools import INPUT_FIELD, STATUS_PATHS, TOOLS, Tool
from pipeline.sandbox.handlers import Output, output_extension
from pipeline.sandbox.faults import (API, STORAGE, ConnectionReset, draw_fault, in_outage, lightx_json,
                                     outage_answer)
from pipeline.sandbox.ledger import Ledger
from pipeline.sandbox.options import ROOT, SandboxOptions
from pipeline.sandbox.pictures import get_picture
from pipeline.sandbox.presign import MAGIC, check_body, check_signature, query_for, s3_error
from pipeline.sandbox.state import Order, SandboxState, UploadSlot

STATE = web.AppKey("state", SandboxState)
LEDGER = web.AppKey("ledger", Ledger)

_KEY_PATTERN = r"apikey/[0-9a-f]{32}\.(?:jpeg|png)"
_NON_API = STORAGE | {"cdn"}
_KEEP_HTTP_STATUS = frozenset({401, 402})  # bad key, no credits: never disguised as HTTP 200


class Rejected(Exception):
    """A LightX-shaped refusal raised by a handler's checks; ``fail`` always answers HTTP 200 FAIL."""

    def __init__(self, http_status: int, status_code: int, message: str, fail: bool = False):
        super().__init__(message)
        self.http_status, self.status_code, self.message, self.fail = http_status, status_code, message, fail

    def response(self, options: SandboxOptions) -> web.Response:
        if self.fail or options.refusals_http_200 and self.http_status not in _KEEP_HTTP_STATUS:
            return web.json_response({"status": "FAIL", "statusCode": self.status_code,
                                      "message": self.message, "description": self.message,
                                      "body": None})
        return lightx_json(self.http_status, self.status_code, self.message)


def _avg_response_time(options) -> float | int:
    """What the sandbox reports as avgResponseTimeInSec: set, or its own processing time."""
    avg = options.avg_response_time_s if options.avg_response_time_s is not None else options.processing_s
    return int(avg) if float(avg).is_integer() else avg


def _success(body: dict[str, Any]) -> web.Response:
    return lightx_json(200, 2000, "SUCCESS", body)


def _s3_response(status: int, code: str, message: str, resource: str = "") -> web.Response:
    return web.Response(status=status, content_type="application/xml",
                        text=s3_error(code, message, resource))


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _check_key(request: web.Request, state: SandboxState) -> None:
    if request.headers.get("x-api-key") != state.options.api_key:
        raise Rejected(401, 4010, "Invalid API key")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Rejected(400, 4001, "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, 4001, "Request body must be a JSON object")
    return data


@web.middleware
async def sandbox_middleware(request: web.Request, handler):
    """Count, delay and maybe fault a client request, all before it has any effect."""
    name = request.match_info.route.name
    endpoint = name.split(".")[0] if name else name  # "submit.upscale" is a submit, "status.v2" a status
    if endpoint not in API | _NON_API:
        return await handler(request)
    state = request.app[STATE]
    state.ledger.requests[endpoint] += 1
    if endpoint in _NON_API and "x-api-key" in request.headers:
        state.ledger.keys_seen_on_non_api += 1
    if state.options.latency_s > 0:
        await asyncio.sleep(state.options.latency_s)
    if in_outage(endpoint, state.options, state.ledger):
        state.ledger.faults["outage"] += 1
        try:
            return outage_answer(request, state.options)
        except ConnectionReset:
            raise asyncio.CancelledError() from None
    kind = draw_fault(endpoint, state.options, state.fault_rng)
    if kind is not None and kind.respond is not None:
        state.ledger.faults[kind.name] += 1
        try:
            return kind.respond(request, state.fault_rng, state.options)
        except ConnectionReset:
            # The transport is gone; cancelling stops aiohttp from writing a response to it.
            raise asyncio.CancelledError() from None
    try:
        response = await handler(request)
    except Rejected as rejected:
        return rejected.response(state.options)
    if kind is not None and (spoiled := kind.spoil(response)) is not None:
        state.ledger.faults[kind.name] += 1
        return spoiled
    return response


async def upload_url(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _check_key(request, state)
    data = await _json_object(request)
    size, content_type = data.get("size"), data.get("contentType")
    limit = state.options.max_upload_bytes
    if data.get("uploadType") != "imageUrl":
        raise Rejected(400, 4001, "uploadType must be 'imageUrl'")
    if content_type not in MAGIC:
        raise Rejected(400, 4001, "contentType must be image/jpeg or image/png")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise Rejected(400, 4001, "size must be a positive integer number of bytes")
    if size > limit:
        raise Rejected(400, 4001, f"Image size {size} exceeds the limit of {limit} bytes")
    slot = state.create_slot(size, content_type, request.host, _origin(request))
    put_url = f"{_origin(request)}/s3/{slot.grant.key}?{query_for(state.secret, slot.grant)}"
    return _success({"uploadImage": put_url, "imageUrl": slot.image_url, "size": size})


async def put_object(request: web.Request) -> web.Response:
    state = request.app[STATE]
    key = request.match_info["key"]
    body = await request.read()
    slot = state.slots.get(key)
    resource = f"/{key}"
    if slot is None:
        reason, code = "no upload slot was issued for this object key", "SignatureDoesNotMatch"
    elif (reason := check_signature(state.secret, slot.grant, dict(request.query))) is not None:
        code = "SignatureDoesNotMatch"
    elif slot.put_expired(state.clock()):
        reason, code = "Request has expired", "AccessDenied"
    elif (reason := check_body(slot.grant, request.headers.get("Content-Type"),
                               request.headers.get("Content-Length"), request.host, body)) is not None:
        code = "SignatureDoesNotMatch" if "body is not" not in reason else "AccessDenied"
    else:
        state.store_upload(slot, body)
        return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
    state.ledger.rejected_uploads.append(reason)
    return _s3_response(403, code, reason, resource)


async def get_upload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    slot = state.slots.get(request.match_info["key"])
    if slot is None or slot.data is None:
        return _s3_response(403, "AccessDenied", "Access Denied")
    if slot.url_expired(state.clock(), state.options.upload_ttl_s):
        return _s3_response(403, "AccessDenied", "Request has expired")
    return web.Response(body=slot.data, content_type=slot.grant.content_type)


def _uploaded(state: SandboxState, url: Any, field: str) -> UploadSlot:
    """The upload slot behind an imageUrl the sandbox issued, or the refusal LightX would give."""
    slot = state.slots_by_url.get(url) if isinstance(url, str) else None
    if slot is None:
        where = "" if field == INPUT_FIELD else f" in {field}"
        raise Rejected(400, 4002, f"External image URLs are not supported{where}; "
                                  "upload the image through v2/uploadImageUrl")
    if slot.data is None:
        raise Rejected(400, 4005, f"{field} has no uploaded image; the PUT never completed")
    return slot


def _values(tool: Tool, body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields by registry name, checked as the registry says (4001 naming the field)."""
    values = {}
    for f in tool.fields:
        if f.api not in body or body[f.api] is None:
            if f.required:
                raise Rejected(400, 4001, f"{f.api} is required")
            continue
        try:
            values[f.name] = f.check(body[f.api])
        except ValueError as exc:
            raise Rejected(400, 4001, f"{f.api} {exc}") from None
    return values


def _submit_route(tool: Tool):
    async def submit(request: web.Request) -> web.Response:
        state = request.app[STATE]
        _check_key(request, state)
        body = await _json_object(request)
        image_url = body.get(INPUT_FIELD)
        if not isinstance(image_url, str) or not image_url:
            raise Rejected(400, 4001, "imageUrl is required")
        values = _values(tool, body)
        prompt = values.get("prompt", "")
        refused = state.options.refuse_prompt
        if refused is not None and refused.casefold() in prompt.casefold():
            raise Rejected(400, 4013, "PROMPT_NOT_ALLOWED")
        slot = _uploaded(state, image_url, INPUT_FIELD)
        images = {f.name: _uploaded(state, values[f.name], f.api) for f in tool.fields
                  if f.name in values and f.is_image(values[f.name])}
        image, sha256 = slot.data, slot.sha256  # as they are now, should the slot be PUT again meanwhile
        decodes = await state.decodes(image)  # before the checks below, so nothing awaits between them
        if any(s.url_expired(state.clock(), state.options.upload_ttl_s) for s in (slot, *images.values())):
            raise Rejected(400, state.options.expired_status_code, state.options.expired_message)
        if decodes and tool.limits and (problem := tool.limit_problem(values, _size(image))):
            raise Rejected(400, 4006, problem, fail=True)
        if state.out_of_credits():
            raise Rejected(402, 4020, "Insufficient credits")
        record = state.submit(image, sha256, prompt, decodes, tool, values, images)
        return _success({"orderId": record.order_id,
                         "maxRetriesAllowed": state.options.max_retries_allowed,
                         "avgResponseTimeInSec": _avg_response_time(state.options),
                         "status": "init"})
    return submit


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _status_route(path: str):
    async def order_status(request: web.Request) -> web.Response:
        state = request.app[STATE]
        _check_key(request, state)
        data = await _json_object(request)
        order = state.orders.get(data.get("orderId")) if isinstance(data.get("orderId"), str) else None
        # Each route knows the orders of the tools polled there (upscale's are at v2), as LightX's would.
        if order is None or TOOLS[order.record.tool].status_path != path:
            raise Rejected(400, 4004, "Order not found")
        status = state.poll(order)
        answer = {"orderId": order.record.order_id, "status": status, "output": None}
        if status == "active":
            base = f"{_origin(request)}/output/{order.record.order_id}"
            answer["output"] = f"{base}.{output_extension(order.record.tool, order.values)}"
            if TOOLS[order.record.tool].masked:
                answer["mask"] = f"{base}-mask.png"
        return _success(answer)
    return order_status


async def _output(request: web.Request) -> tuple[Order | None, Output | None]:
    state = request.app[STATE]
    order = state.orders.get(request.match_info["order_id"])
    if order is None or order.record.status(state.clock()) != "active":
        return order, None
    return order, await state.render(order)


async def get_output(request: web.Request) -> web.Response:
    order, output = await _output(request)
    ext = request.match_info["ext"]
    if output is None or ext != output_extension(order.record.tool, order.values):
        return _s3_response(404, "NoSuchKey", "The specified key does not exist.",
                            f"/{request.match_info['order_id']}.{ext}")
    return web.Response(body=output.data, content_type=output.content_type,
                        headers={"ETag": f'"{hashlib.md5(output.data).hexdigest()}"'})


async def get_mask(request: web.Request) -> web.Response:
    order, output = await _output(request)
    if output is None or output.mask is None:
        return _s3_response(404, "NoSuchKey", "The specified key does not exist.",
                            f"/{request.match_info['order_id']}-mask.png")
    return web.Response(body=output.mask, content_type="image/png",
                        headers={"ETag": f'"{hashlib.md5(output.mask).hexdigest()}"'})


# admin routes: no key, no latency, no faults

async def admin_ledger(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({**state.ledger.to_dict(), "options": state.options.to_dict()})


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE].ledger.reset()
    return web.json_response({"ok": True})


async def admin_age_uploads(request: web.Request) -> web.Response:
    data = await request.json()
    count = request.app[STATE].age_uploads(float(data["seconds"]))
    return web.json_response({"aged": count})


async def admin_options(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        try:
            state.set_options(**await request.json())
        except TypeError as exc:  # an unknown field, or a value of the wrong type
            return web.json_response({"problems": [str(exc)]}, status=400)
        except ConfigError as exc:
            return web.json_response({"problems": exc.problems}, status=400)
    return web.json_response(state.options.to_dict())


def create_app(options: SandboxOptions | None = None, *,
               clock: Callable[[], float] | None = None) -> web.Application:
    """The sandbox as an aiohttp app; its ledger is ``app["ledger"]`` (or ``ledger_of(app)``).

    ``clock`` is the base clock (default ``time.time``); ``clock_skew_s`` is added to it.
    """
    state = SandboxState(options or SandboxOptions(), clock=clock or time.time)
    app = web.Application(middlewares=[sandbox_middleware], client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app[LEDGER] = state.ledger
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["ledger"] = state.ledger
    app.router.add_post(f"{ROOT}/v2/uploadImageUrl", upload_url, name="upload_url")
    for tool in TOOLS.values():
        # The background generator's route keeps the plain name "submit"; every route counts as one.
        name = "submit" if tool.name == "background-generator" else f"submit.{tool.name}"
        app.router.add_post(f"{ROOT}/{tool.submit_path}", _submit_route(tool), name=name)
    for path in sorted(STATUS_PATHS):
        name = "status" if path == "v1/order-status" else f"status.{path.split('/')[0]}"
        app.router.add_post(f"{ROOT}/{path}", _status_route(path), name=name)
    app.router.add_put(f"/s3/{{key:{_KEY_PATTERN}}}", put_object, name="put")
    app.router.add_get(f"/cdn/{{key:{_KEY_PATTERN}}}", get_upload, name="cdn")
    app.router.add_get(r"/output/{order_id:[0-9a-f]+}.{ext:jpg|png}", get_output, name="output")
    app.router.add_get(r"/output/{order_id:[0-9a-f]+}-mask.png", get_mask, name="output.mask")
    app.router.add_get("/pictures/{name}", _pictures, name="pictures")
    app.router.add_get(f"{ROOT}/__ledger", admin_ledger)
    app.router.add_post(f"{ROOT}/__reset", admin_reset)
    app.router.add_post(f"{ROOT}/__age_uploads", admin_age_uploads)
    app.router.add_route("*", f"{ROOT}/__options", admin_options)
    return app


async def _pictures(request: web.Request) -> web.StreamResponse:
    return await get_picture(request, request.app[STATE])


def ledger_of(app: web.Application) -> Ledger:
    return app[LEDGER]


def state_of(app: web.Application) -> SandboxState:
    return app[STATE]
