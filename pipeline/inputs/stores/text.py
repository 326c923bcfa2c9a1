"""Store text as prompts want it: HTML tags removed, entities decoded, whitespace collapsed.

    >>> plain_text("<p>Hand-thrown &amp; glazed</p><ul><li>350&nbsp;ml</li></ul>")
    'Hand-thrown & glazed 350 ml'
"""
from __future__ import annotations

from html.parser import HTMLParser

# Text inside these is not prose: scripts, styles and the like.
_HIDDEN = frozenset({"script", "style", "template", "noscript", "head", "title"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # the standard library decodes every HTML5 entity
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in _HIDDEN:
            self.hidden += 1
        self.parts.append(" ")  # <br>, </p><p>, <li>: words on either side stay apart

    def handle_endtag(self, tag):
        if tag in _HIDDEN and self.hidden:
            self.hidden -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def plain_text(html: str) -> str:
    """The visible words of an HTML fragment, on one line."""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())
