"""The LightX protocol on one Wire (lightx/wire.py); the only place its errors are caught.

    client = Client(wire, base_url, key, retries=RetrySettings(), pacer=Pacer())
    slot = await client.upload_slot(len(data), "image/jpeg")
    await client.put_image(slot.put_url, data, "image/jpeg")
    order = await client.submit(slot.image_url, "a mug on marble")
    status = await client.order_status(order.order_id)
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from pipeline.inputs.config import BASE_URL_ENV, DEFAULT_BASE_URL, RetrySettings
from pipeline.errors import (ApiError, ApiUnreachable, AuthError, CreditsError, FatalApiError, ForeignAnswer,
                             ItemError, Refused, Stopped, TransientError, WrongApi)
from pipeline.inputs.locations import is_http_url
from pipeline.lightx.answers import (answer_message, detail, fatal_from_message, lightx_error, parse_retry_after,
                                     s3_message, server_fault, snippet)
from pipeline.lightx.backoff import backoff, delay_for, gave_up, unanswered_after
from pipeline.lightx.pacing import Pacer
from pipeline.lightx.wire import BadAnswer, CannotConnect, Disconnected, TooBig, Wire
from pipeline.media.formats import sniff_format

T = TypeVar("T")
SUCCESS = 2000
PROBE_ATTEMPTS = 8  # the run's first API call, unanswered (connection refused, timeouts): then ApiUnreachable

# Classified once: the failures of a busy network, worth another try. The Wire raises only these
# (ConnectionError and TimeoutError are OSErrors; so is a socket's own error) and TooBig.
_TRANSIENT_EXC = (OSError,)


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadSlot:
    put_url: str
    image_url: str


@dataclass(frozen=True)
class Order:
    order_id: str
    max_retries: int | None
    status: str
    avg_s: float | None = None   # avgResponseTimeInSec: the API's own estimate of an order's time


@dataclass(frozen=True)
class OrderStatus:
    status: str          # init | active | failed
    output: str | None


class Client:
    """One LightX account on one Wire; retries transient errors, never leaks the key."""

    def __init__(self, wire: Wire, base_url: str, key: str, *,
                 retries: RetrySettings | None = None, pacer: Pacer | None = None,
                 timeout_s: float = 60.0):
        self._wire = wire
        self._base = base_url.rstrip("/")
        self._key = key
        self._retries = retries or RetrySettings()
        self.pacer = pacer or Pacer()
        self._timeout_s, self._connect_s = timeout_s, min(10.0, timeout_s)
        self._api_headers = {"x-api-key": key, "Content-Type": "application/json"}
        self._fatal: FatalApiError | None = None  # a wrong key or URL: every later call fails at once
        # Until the API has answered once as LightX does (success or a refusal), calls go one at a
        # time: a wrong key or URL then costs one request, not one per item in flight.
        self._verified = asyncio.Event()
        self._probe = asyncio.Lock()
        self._stopping = False
        self._on_wire: set[asyncio.Task] = set()  # tasks with a request on the wire now
        self.requests = 0

    def redact(self, text: str) -> str:
        """`text` with this client's key blanked: for messages that may quote anything (a bug's)."""
        return text.replace(self._key, "[redacted]") if self._key else text

    def stop(self) -> None:
        """The run is stopping: no new request or retry from now on (raises Stopped)."""
        self._stopping = True

    def sending(self, task: asyncio.Task) -> bool:
        """Whether `task` has a request on the wire, whose answer must be waited for."""
        return task in self._on_wire

    # -- the four API calls -------------------------------------------------

    async def upload_slot(self, size: int, content_type: str) -> UploadSlot:
        return await self._api("v2/uploadImageUrl", {
            "uploadType": "imageUrl", "size": size, "contentType": content_type}, _parse_slot)

    async def put_image(self, put_url: str, data: bytes, content_type: str) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
        await self._retrying(lambda: self._raw("PUT", put_url, data=data, headers=headers))

    async def submit(self, image_url: str, prompt: str) -> Order:
        return await self._api("v1/background-generator",
                               {"imageUrl": image_url, "textPrompt": prompt}, _parse_order)

    async def order(self, submit_path: str, body: dict[str, Any]) -> Order:
        """Submit any registered tool's order (`pipeline.lightx.tools.request_body` builds `body`)."""
        return await self._api(submit_path, body, _parse_order)

    async def order_status(self, order_id: str, status_path: str = "v1/order-status") -> OrderStatus:
        return await self._api(status_path, {"orderId": order_id}, _parse_status)

    async def download(self, url: str, max_bytes: int = 64 * 1024 * 1024,
                       formats: tuple[str, ...] = ("jpeg",)) -> bytes:
        if not is_http_url(url):
            raise ItemError(f"refusing to fetch output over a non-http(s) URL scheme: {url.split(':', 1)[0]!r}")
        async def fetch() -> bytes:
            data = await self._raw("GET", url, max_bytes=max_bytes)
            if sniff_format(data) not in formats:  # a gateway's HTML page is worth another try
                raise TransientError(f"output is not a {' or '.join(f.upper() for f in formats)} "
                                     f"({snippet(data)})")
            return data
        return await self._retrying(fetch)

    # -- machinery ------------------------------------------------------------

    async def _api(self, path: str, payload: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T:
        """POST one JSON API call with the key; parse `body` of a statusCode 2000 answer.

        A refusal in an HTTP 200 (a LightX answer with another statusCode) is asked once more, then
        raised as it is; one in an HTTP 4xx at once. Either proves the key and the URL work.
        """
        async def call() -> T:
            return parse(await self._json_call(path, payload))

        async def first_call() -> T:  # JSON that is not LightX's, before any LightX answer: a wrong URL
            try:
                return await call()
            except ForeignAnswer as exc:
                raise self._wrong_api(path, str(exc)) from None

        async def twice(attempt: Callable[[], Awaitable[T]], probe: bool = False) -> T:
            try:
                return await self._retrying(attempt, probe)
            except Refused as exc:
                if exc.http_status is not None:  # an HTTP 4xx says so plainly: not asked again
                    raise
            return await self._retrying(attempt, probe)

        if self._fatal:
            raise self._fatal
        if self._verified.is_set():
            return await twice(call)
        async with self._probe:
            if self._fatal:
                raise self._fatal
            if not self._verified.is_set():
                try:
                    result = await twice(first_call, probe=True)
                except ItemError as exc:
                    if exc.status_code is not None:  # LightX answered, and said no: key and URL work
                        self._verified.set()
                    elif exc.http_status in (404, 405, 410):
                        raise self._wrong_api(path, f"HTTP {exc.http_status}") from None
                    elif exc.http_status is None:
                        # Not one HTTP answer from the first call: a wrong URL or an outage, not this item.
                        raise ApiUnreachable(f"cannot reach the API at {self._base} ({exc})") from None
                    raise
                self._verified.set()
                return result
        return await twice(call)  # another call opened the gate while this one waited at it

    def _wrong_api(self, path: str, what: str) -> WrongApi:
        self._fatal = WrongApi(
            f"the API at {self._base} does not answer as LightX ({what} on {path}): set api.base_url in "
            f"the config, or {BASE_URL_ENV}, to LightX's API root, {DEFAULT_BASE_URL}")
        return self._fatal

    async def _json_call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        raw = await self._raw("POST", f"{self._base}/{path}", data=json.dumps(payload).encode(),
                              headers=self._api_headers, api=True, name=path.rsplit("/", 1)[-1])
        try:
            doc = json.loads(raw)
        except ValueError:
            raise TransientError(f"{path}: answer is not JSON ({snippet(raw)})") from None
        if not isinstance(doc, dict):
            raise TransientError(f"{path}: answer is not a JSON object")
        if "statusCode" not in doc:
            raise ForeignAnswer(f"{path}: answer is JSON without a statusCode")
        code = doc.get("statusCode")
        if code != SUCCESS:
            message = answer_message(doc)
            if server_fault(code):  # LightX's own 5xx, even in an HTTP 200: retried like one
                raise TransientError(f"{path}: statusCode {code}: {message}", status_code=code)
            fatal = fatal_from_message(code, message)
            if fatal:
                raise self._note_fatal(fatal)
            # The API said no: only a transport fault is worth a retry (see _api: asked once more).
            raise Refused(f"{path}: statusCode {code}: {message}", status_code=code)
        body = doc.get("body")
        if not isinstance(body, dict):
            raise TransientError(f"{path}: answer has no body")
        return body

    async def _raw(self, method: str, url: str, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None, api: bool = False, name: str | None = None,
                   max_bytes: int = 8 * 1024 * 1024) -> bytes:
        """One HTTP exchange; every transport failure is translated here.

        Only API calls carry the key (in `headers`), and they never follow redirects; S3 uploads and
        CDN downloads are not paced, since the rate limit is the API's.
        """
        if api:
            await self.pacer.acquire()
        if self._stopping:
            raise Stopped("stopping: request not sent")
        name = name or method
        self.requests += 1
        task = asyncio.current_task()
        self._on_wire.add(task)
        try:
            answer = await self._wire.request(method, url, body=data, headers=headers, timeout_s=self._timeout_s,
                                              connect_s=self._connect_s, redirects=not api, max_bytes=max_bytes)
        except TooBig as exc:
            raise ItemError(f"{name}: answer of {exc.size} bytes is over the {max_bytes}-byte cap" if exc.size
                            else f"{name}: answer is over the {max_bytes}-byte cap") from None
        except _TRANSIENT_EXC as exc:
            raise TransientError(f"{name}: {_describe(exc)}") from None
        finally:
            self._on_wire.discard(task)
        if not api and not is_http_url(answer.url):
            raise ItemError("redirected away from http(s)")
        status = answer.status
        if log.isEnabledFor(logging.DEBUG):  # the request's name only: URLs carry signatures
            log.debug("%s: HTTP %s", name, status)
        if api and status != 429:
            self.pacer.observe(False)
        if status >= 400 or status < 200:
            raise self._http_error(name, status, parse_retry_after(answer.headers.get("retry-after"),
                                                                answer.headers.get("date")), answer.body[:2048], api)
        return answer.body

    def _http_error(self, name: str, status: int, wait: float | None, text: bytes, api: bool):
        if status == 429:
            if api:
                self.pacer.throttled(wait)
            return TransientError(f"{name}: HTTP 429 rate limited", http_status=429, retry_after=wait)
        if status >= 500 or status in (408, 425):
            return TransientError(f"{name}: HTTP {status}", http_status=status, retry_after=wait)
        code, message = lightx_error(text)
        if api and server_fault(code):
            return TransientError(f"{name}: HTTP {status}{detail(code, message)}", http_status=status,
                                  status_code=code, retry_after=wait)
        if api and status in (401, 403):
            return self._note_fatal(AuthError(f"API key rejected (HTTP {status}{detail(code, message)})"))
        if api and status == 402:
            return CreditsError(f"no credits left (HTTP 402{detail(code, message)})")
        if api:
            fatal = fatal_from_message(code, message)
            if fatal:
                return self._note_fatal(fatal)
            if code is not None:  # LightX's own refusal, with its code
                return Refused(f"{name}: HTTP {status}{detail(code, message)}", http_status=status,
                               status_code=code)
        if not api and status == 403 and text.lstrip().startswith(b"<"):
            message = message or s3_message(text)
        return ItemError(f"{name}: HTTP {status}{detail(code, message)}", http_status=status,
                         status_code=code)

    def _note_fatal(self, exc: Exception) -> Exception:
        if isinstance(exc, AuthError):
            self._fatal = exc
        return exc

    async def _retrying(self, call: Callable[[], Awaitable[T]], probe: bool = False) -> T:
        """Run `call`, retrying TransientError with exponential backoff, full jitter and Retry-After,
        for up to retries.budget_s seconds (and retries.transient attempts, when set). A `probe` (the
        run's first API call) that gets no HTTP answer at all gives up after PROBE_ATTEMPTS: a wrong
        URL is likelier than an outage then, and should not cost minutes.

        The first attempt runs bare: it nearly always succeeds, and building tenacity's retry state
        for every request cost a fifth of the client's CPU. Retries are tenacity's.
        """
        settings = self._retries
        attempts = settings.transient
        started = time.monotonic()
        try:
            return await call()
        except TransientError as exc:
            if attempts is not None and attempts <= 1:
                raise gave_up(exc, 1, started) from None
            first = exc
        log.debug("retrying after %s", first)
        delay = delay_for(1, first, settings.backoff_base_s, settings.backoff_max_s)
        if time.monotonic() - started + delay > settings.budget_s:
            raise gave_up(first, 1, started) from None
        await self.pause(delay)
        # Here, not at the top: most runs retry nothing, and the import costs every run's start-up.
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_before_delay
        stop = stop_before_delay(max(0.0, settings.budget_s - (time.monotonic() - started)))
        if attempts is not None:
            stop = stop | stop_after_attempt(attempts - 1)
        if probe:
            stop = stop | unanswered_after(PROBE_ATTEMPTS - 1)
        tried = 1
        try:
            async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(TransientError), stop=stop,
                    wait=backoff(settings.backoff_base_s, settings.backoff_max_s, done=1),
                    sleep=self.pause, reraise=True):
                with attempt:
                    tried = 1 + attempt.retry_state.attempt_number
                    return await call()
        except TransientError as exc:
            raise gave_up(exc, tried, started) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def pause(self, seconds: float) -> None:
        """A backoff sleep; Stopped if the run is stopping, before or after it."""
        if self._stopping:
            raise Stopped("stopping: no further attempt")
        await asyncio.sleep(seconds)
        if self._stopping:
            raise Stopped("stopping: no further attempt")


def _parse_slot(body: dict[str, Any]) -> UploadSlot:
    put_url, image_url = body.get("uploadImage"), body.get("imageUrl")
    if not put_url or not image_url:
        raise TransientError("uploadImageUrl answer lacks uploadImage or imageUrl")
    return UploadSlot(put_url=str(put_url), image_url=str(image_url))


def _parse_order(body: dict[str, Any]) -> Order:
    order_id = body.get("orderId")
    if not order_id:
        raise TransientError("background-generator answer has no orderId")
    max_retries, avg = body.get("maxRetriesAllowed"), body.get("avgResponseTimeInSec")
    return Order(order_id=str(order_id), status=str(body.get("status", "init")),
                 max_retries=max_retries if isinstance(max_retries, int) and max_retries > 0 else None,
                 avg_s=float(avg) if isinstance(avg, (int, float)) and not isinstance(avg, bool) and 0 < avg < 3600
                 else None)


def _parse_status(body: dict[str, Any]) -> OrderStatus:
    status = str(body.get("status", ""))
    if status not in ("init", "active", "failed"):
        raise TransientError(f"order-status answered an unknown status {status!r}")
    output = body.get("output")
    if status == "active" and not output:
        raise TransientError("order is active but has no output URL")
    return OrderStatus(status=status, output=str(output) if output else None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, (CannotConnect, Disconnected, BadAnswer)):  # the Wire's own words
        return str(exc)
    return type(exc).__name__

