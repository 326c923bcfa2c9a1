"""What kind of place a string names: the one definition of an http(s) URL."""
from __future__ import annotations

HTTP_SCHEMES = frozenset({"http", "https"})
_HTTP_PREFIXES = ("http://", "https://")


def is_http_url(text: str) -> bool:
    """True for an http:// or https:// URL, in any letter case."""
    return text[:8].lower().startswith(_HTTP_PREFIXES)
