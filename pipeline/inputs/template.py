"""`{column}` templates (prompts, output file names, step values), and what a file name may be."""
from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter


class Template:
    """A ``{column}`` template, parsed once; placeholders are plain column names, nothing more.

    >>> Template.parse("{title} on {scene}").fill({"title": "A mug", "scene": "marble"})
    'A mug on marble'
    """

    def __init__(self, text: str, fields: list[str], positional: str):
        self.text = text
        self.fields = fields
        self._format = positional.format  # "{0} on {1}": columns are looked up by name, never as attributes
        self._get = itemgetter(*fields) if len(fields) > 1 else (
            (lambda values: (values[fields[0]],)) if fields else (lambda values: ()))

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raise ValueError saying what is wrong with a placeholder."""
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} in {text!r}; write {{{{ and }}}} for literal braces") from None
        fields: dict[str, int] = {}
        positional = ""
        for literal, name, spec, conversion in parsed:
            positional += literal.replace("{", "{{").replace("}", "}}")
            if name is None:
                continue
            if not name.strip() or name.isdigit():
                raise ValueError(f"placeholder {{{name}}} in {text!r} must name a column, e.g. {{title}}")
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                                 f"{':' + spec if spec else ''}}} in {text!r}: write just {{{name}}}")
            positional += f"{{{fields.setdefault(name, len(fields))}}}"
        return cls(text, list(fields), positional)

    def fill(self, values: Mapping[str, str]) -> str:
        """Fill the placeholders from ``values``; a missing column raises KeyError."""
        return self._format(*self._get(values))

    def over(self, columns: list[str]) -> Callable[[Sequence[str]], str] | None:
        """``fill`` for rows given as lists in ``columns``' order (a CSV's records, no dict per row);
        None when a placeholder names none of the columns."""
        if any(f not in columns for f in self.fields):
            return None
        at = [columns.index(f) for f in self.fields]
        get = itemgetter(*at) if len(at) > 1 else ((lambda values: (values[at[0]],)) if at else (lambda values: ()))
        form = self._format
        return lambda values: form(*get(values))

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def output_name_problem(name: str) -> str | None:
    """Why a filled output file name would not stay inside output.dir, or None."""
    if "/" not in name and "\\" not in name and "\0" not in name and name not in ("", ".", ".."):
        return None  # the common case, "{id}.jpg", decided without splitting
    if not name:
        return "is empty"
    if "\\" in name or "\0" in name:
        return "must not contain backslashes or NUL characters"
    if name.startswith("/"):
        return "is an absolute path; it must be relative to output.dir"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must stay inside output.dir: no '..', '.' or empty parts"
    return None
