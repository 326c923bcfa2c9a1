"""Reading the user's files: config and manifest text (local or a storage URL), YAML, paths as shown."""
from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.store.remote import Remote, describe, faults, is_missing_bucket


def display_path(path: str | Path) -> str:
    """A path as the user will recognise it: relative to the working directory when it is below it."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    rel = os.path.relpath(text)
    return text if rel.startswith("..") else rel


def read_text(path: Path | str, shown: str, kind: str, options: Mapping[str, Any] | None = None) -> str:
    """The file (or storage URL, opened with `options`) as UTF-8 text (a BOM is dropped), or a
    ConfigError saying why it is not."""
    data = _read_stored(path, shown, kind, options) if isinstance(path, str) else _read_local(path, shown, kind)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{shown}: is UTF-16 text; save it as UTF-8")
    if b"\0" in data:
        raise ConfigError(f"{shown}: is a binary file, not a text {kind}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{shown}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          f"save the file as UTF-8") from None


def checked_local(path: Path, shown: str, kind: str) -> str:
    """What `read_text` checks of a local file, with the same lines, read a megabyte at a time and
    nothing kept: returns the sha256 of its text's UTF-8 (a BOM dropped), as the text's own would be.
    A million-row manifest is then parsed from the file, never held whole (bytes and str: 4x its size)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise ConfigError(f"{shown}: is UTF-16 text; save it as UTF-8")
            fh.seek(3 if head == codecs.BOM_UTF8 else 0)
            for block in iter(lambda: fh.read(_BLOCK), b""):
                if b"\0" in block:
                    raise ConfigError(f"{shown}: is a binary file, not a text {kind}")
                digest.update(block)
            fh.seek(0)
            lines, rest = 0, b""
            for block in iter(lambda: fh.read(_BLOCK), b""):
                cut = block.rfind(b"\n") + 1  # whole lines: a character is never cut in two
                chunk, rest = rest + block[:cut], block[cut:] if cut else rest + block
                lines = _decodes(chunk, lines, shown) if cut else lines
            _decodes(rest, lines, shown)
    except OSError as exc:
        raise unreadable(exc, shown, kind) from None
    return digest.hexdigest()


_BLOCK = 1 << 20


def _decodes(chunk: bytes, lines: int, shown: str) -> int:
    """The lines before ``chunk`` and in it, once it is known to be UTF-8."""
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = lines + chunk.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{shown}: line {line}: not UTF-8 text (byte 0x{chunk[exc.start]:02x}); "
                          f"save the file as UTF-8") from None
    return lines + chunk.count(b"\n")


def _read_local(path: Path, shown: str, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise unreadable(exc, shown, kind) from None


def unreadable(exc: OSError, shown: str, kind: str) -> ConfigError:
    """The one line for a local file that cannot be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"{shown}: {kind} not found")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"{shown}: is a directory, not a {kind}")
    return ConfigError(f"{shown}: cannot read the {kind}: {exc.strerror}")


def _read_stored(url: str, shown: str, kind: str, options: Mapping[str, Any] | None) -> bytes:
    store = Remote.open(url, options)
    try:
        return store.backoff.call(lambda: store.fs.cat_file(store.root), faults())
    except FileNotFoundError as exc:
        if is_missing_bucket(exc):
            raise ConfigError(describe(exc, url)) from None
        raise ConfigError(f"{shown}: {kind} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a folder, not a {kind}") from None
    except faults() as exc:
        raise ConfigError(describe(exc, url)) from None


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (C-accelerated when available) that also refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, shown: str) -> Any:
    """Parse YAML with the safe loader; a syntax error becomes a ConfigError naming its line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        if exc.context_mark and mark and exc.context_mark.line != mark.line and "block" not in (exc.context or ""):
            what += f" (it began on line {exc.context_mark.line + 1})"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and re.search(r":\s+\{", lines[mark.line]):
            what += '; a value starting with { must be quoted, e.g. prompt: "{title} on marble"'
        raise ConfigError(f"{shown}: {where}YAML syntax error: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{shown}: line {line}: character {exc.character!r} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: YAML error: {' '.join(str(exc).split())}") from None
