"""Reading error answers: LightX's JSON (statusCode, message, description), S3's XML, Retry-After.

Pure functions of bytes and strings; `client.Client` decides what each answer means for the run.
"""
from __future__ import annotations

import json
import re
from typing import Any

from pipeline.errors import AuthError, CreditsError
from pipeline.store.retry import retry_after_s


def fatal_from_message(code: Any, message: str) -> Exception | None:
    text = message.lower()
    if "credit" in text or "insufficient" in text or "quota" in text:
        return CreditsError(f"no credits left (statusCode {code}: {message})")
    if "api key" in text or "apikey" in text or "unauthori" in text or "x-api-key" in text:
        return AuthError(f"API key rejected (statusCode {code}: {message})")
    return None


def server_fault(code: Any) -> bool:
    """A statusCode in LightX's 5xxx range (5000 INTERNAL_SERVER_ERROR and its kin): the server's own
    fault, transient like an HTTP 5xx, not a refusal of the request."""
    return isinstance(code, int) and not isinstance(code, bool) and 5000 <= code <= 5999


def lightx_error(text: bytes) -> tuple[Any, str]:
    try:
        doc = json.loads(text)
    except ValueError:
        return None, ""
    if not isinstance(doc, dict):
        return None, ""
    return doc.get("statusCode"), answer_message(doc)


def answer_message(doc: dict[str, Any]) -> str:
    """A LightX answer's message, with its description when that says more (as status FAIL answers do)."""
    message, description = str(doc.get("message") or ""), str(doc.get("description") or "")
    if description and description != message:
        message = f"{message} ({description})" if message else description
    return message[:200]


def s3_message(text: bytes) -> str:
    found = re.search(rb"<Code>([^<]{1,80})</Code>", text)
    return found.group(1).decode("ascii", "replace") if found else ""


def detail(code: Any, message: str) -> str:
    parts = [f"statusCode {code}" if code is not None else "", message]
    joined = ": ".join(p for p in parts if p)
    return f", {joined}" if joined else ""


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Retry-After in seconds (delay-seconds or an HTTP-date read against the answer's Date); None
    when absent or unreadable, and the request's own backoff serves."""
    return retry_after_s(value, date)


def snippet(raw: bytes) -> str:
    text = raw[:60].decode("utf-8", "replace").replace("\n", " ").strip()
    return repr(text) if text else "empty"
