"""Retrying object store calls: which faults are transient, and how long to wait before the next try.

    backoff = Backoff.of(cfg.retries)            # or Backoff() for the defaults: five minutes
    data = backoff.call(lambda: fs.cat_file(path))

A transient fault is one a later try can fix: 503 SlowDown, 500 InternalError, any 5xx, 429 and 408,
connection resets, refused connections and timeouts. Missing credentials, a missing bucket or object
and access denied are not: they are raised at once. Waits are exponential with full jitter (the AWS
architecture blog's "Exponential Backoff And Jitter"), floored by a Retry-After the store sent, and a
call gives up when the next wait would take it past the budget (`retries.budget_s`, 300 s by default:
minutes of trouble are ridden out, as a throttled bucket's usually are).
"""
from __future__ import annotations

import asyncio
import errno
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Error codes of S3 (and of S3-compatible stores) that mean "try again later".
TRANSIENT_CODES = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                             "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "503", "500",
                             "502", "504", "OperationAborted", "RequestTimeTooSkewed"})
# Exception classes, by name, of the backends' transports (botocore, aiohttp, fsspec, google-auth,
# azure-core) that a retry can fix: matching names spares importing every backend.
TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "HTTPClientError", "ProxyConnectionError",
    "ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
    "ClientPayloadError", "ServerTimeoutError", "FSTimeoutError", "IncompleteRead", "RemoteDisconnected",
    "ServiceRequestError", "ServiceResponseError", "TransportError", "ResponseParserError"})
NOT_TRANSIENT_NAMES = frozenset({"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError",
                                 "CredentialRetrievalError", "ClientAuthenticationError", "NoRegionError"})


def _chain(exc: BaseException):
    """The exception and those it was raised from (s3fs raises OSError from botocore's ClientError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def transient(exc: BaseException) -> tuple[bool, float | None]:
    """(whether a retry can fix `exc`, the Retry-After the store sent in seconds, if any)."""
    for link in _chain(exc):
        name = type(link).__name__
        if name in NOT_TRANSIENT_NAMES or isinstance(link, (FileNotFoundError, PermissionError, FileExistsError,
                                                             IsADirectoryError, NotADirectoryError)):
            return False, None
        status, code, after = _http_of(link)
        if status is not None or code is not None:
            if code in TRANSIENT_CODES or (status is not None and (status >= 500 or status in (408, 429))):
                return True, after
            return False, None
        if name in TRANSIENT_NAMES or isinstance(link, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True, None
        if isinstance(link, OSError) and link.errno in (errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT,
                                                        errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE):
            return True, None  # s3fs words SlowDown as EBUSY ("Please reduce your request rate")
    return False, None


def _http_of(exc: BaseException) -> tuple[int | None, str | None, float | None]:
    """(HTTP status, error code, Retry-After) of a backend's HTTP error: botocore's ClientError keeps a
    `response` dict, gcsfs's HttpError a `code`, azure-core's HttpResponseError a `status_code`."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        headers = {str(k).lower(): v for k, v in (meta.get("HTTPHeaders") or {}).items()}
        status = meta.get("HTTPStatusCode")
        return (status if isinstance(status, int) else None, (response.get("Error") or {}).get("Code"),
                retry_after_s(headers.get("retry-after"), headers.get("date")))
    for attribute in ("status_code", "code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            headers = getattr(getattr(exc, "response", None), "headers", None) or getattr(exc, "headers", None)
            if not hasattr(headers, "get"):
                return value, None, None
            return value, None, retry_after_s(headers.get("Retry-After"), headers.get("Date"))
    return None, None, None


def retry_after_s(value: Any, date: Any = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3).
    A date is read against the same answer's `Date` header when it has one, so a server whose clock
    runs ahead of ours asks for the wait it means; else against our clock. None when unreadable."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    when = _http_date(text)
    if when is None:
        return None
    now = _http_date(str(date)) if date else None
    return max(0.0, when - (now if now is not None else time.time()))


def _http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() if when is not None and when.tzinfo is not None else None


@dataclass(frozen=True)
class Backoff:
    """How a store call is retried: waits from `base_s` doubling up to `max_s`, for up to `budget_s`
    seconds in all (and `attempts` tries, when set)."""

    base_s: float = 0.5
    max_s: float = 30.0
    budget_s: float = 300.0
    attempts: int | None = None

    @classmethod
    def of(cls, settings: Any) -> "Backoff":
        """From the config's `retries` section (inputs.config.RetrySettings), or the defaults for None."""
        if settings is None:
            return cls()
        return cls(base_s=settings.backoff_base_s, max_s=settings.backoff_max_s, budget_s=settings.budget_s,
                   attempts=settings.transient)

    def wait(self, exc: BaseException, tried: int, started: float) -> float | None:
        """Seconds to wait before try `tried + 1` after `exc`, or None to give up now."""
        retry, after = transient(exc)
        return self.next_wait(tried, started, after) if retry else None

    def next_wait(self, tried: int, started: float, after: float | None = None) -> float | None:
        """Seconds to wait after `tried` transient faults since `started` (floored by a Retry-After of
        `after` seconds), or None once the attempts or the budget are spent."""
        if self.attempts is not None and tried >= self.attempts:
            return None
        delay = random.uniform(0, min(self.max_s, self.base_s * 2 ** (tried - 1)))
        if after:
            delay = max(delay, min(after, self.max_s))
        if time.monotonic() - started + delay > self.budget_s:
            return None
        return delay

    def call(self, action: Callable[[], T], catch: tuple[type[BaseException], ...] = (OSError,)) -> T:
        """`action()`, tried again after each transient fault of the `catch` types while the budget
        lasts; any other fault, or the last, is raised."""
        started, tried = time.monotonic(), 0
        while True:
            tried += 1
            try:
                return action()
            except catch as exc:
                delay = self.wait(exc, tried, started)
                if delay is None:
                    raise
            time.sleep(delay)
