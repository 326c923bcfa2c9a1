"""S3-style presigned PUT URLs: signing, checking, and S3's XML error bodies."""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNED_HEADERS = "content-length;content-type;host"
ACCESS_KEY = "AKIASANDBOXLOCAL0000"
REGION = "local"

MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
}
EXTENSIONS = {"image/jpeg": "jpeg", "image/png": "png"}


@dataclass(frozen=True)
class PutGrant:
    """What a presigned URL allows: one object, one size, one content type, one host."""

    key: str            # "apikey/<hex>.jpeg"
    size: int
    content_type: str
    host: str           # host[:port] the URL was issued for
    amz_date: str       # "20250127T044301Z"
    expires: int        # seconds


def amz_date(at: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if at is None else at))


def signature(secret: bytes, grant: PutGrant) -> str:
    canonical = "\n".join(["PUT", grant.key, str(grant.size), grant.content_type,
                           grant.host, grant.amz_date, str(grant.expires)])
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def query_for(secret: bytes, grant: PutGrant) -> str:
    """The query string of the presigned URL, percent-encoded as S3 does (``%3B``, ``%2F``)."""
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Date": grant.amz_date,
        "X-Amz-SignedHeaders": SIGNED_HEADERS,
        "X-Amz-Expires": str(grant.expires),
        "X-Amz-Credential": f"{ACCESS_KEY}/{grant.amz_date[:8]}/{REGION}/s3/aws4_request",
        "X-Amz-Signature": signature(secret, grant),
    }
    return urlencode(params, quote_via=quote, safe="")


def check_signature(secret: bytes, grant: PutGrant, query: dict[str, str]) -> str | None:
    """None when the URL's query is the one issued for ``grant``, else why not."""
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        return "unsupported or missing X-Amz-Algorithm"
    if query.get("X-Amz-SignedHeaders") != SIGNED_HEADERS:
        return "X-Amz-SignedHeaders differs from the signed value"
    if query.get("X-Amz-Date") != grant.amz_date or query.get("X-Amz-Expires") != str(grant.expires):
        return "X-Amz-Date or X-Amz-Expires differs from the signed value"
    given = query.get("X-Amz-Signature", "")
    if not hmac.compare_digest(given, signature(secret, grant)):
        return "the request signature does not match the presigned URL"
    return None


def check_body(grant: PutGrant, content_type: str | None, content_length: str | None,
               host: str, body: bytes) -> str | None:
    """None when the headers and bytes are exactly what was declared, else the first mismatch."""
    if host != grant.host:
        return f"Host {host!r} differs from the signed host {grant.host!r}"
    if content_type != grant.content_type:
        return f"Content-Type {content_type!r} differs from the declared {grant.content_type!r}"
    if content_length is None:
        return "Content-Length is missing; it is a signed header"
    if content_length != str(grant.size):
        return f"Content-Length {content_length} differs from the declared size {grant.size}"
    if len(body) != grant.size:
        return f"body has {len(body)} bytes, declared {grant.size}"
    if not body.startswith(MAGIC[grant.content_type]):
        return f"body is not a {grant.content_type} file"
    return None


def s3_error(code: str, message: str, resource: str = "") -> str:
    """An S3-shaped XML error document."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{escape(resource)}</Resource>"
            f"<RequestId>{hashlib.sha1(message.encode()).hexdigest()[:16].upper()}</RequestId></Error>")
