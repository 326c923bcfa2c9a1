"""Which store wrote an export: from its header row, or its XML root; `store.format` overrides.

    >>> export = open_store(cfg, path, "products_export.csv")   # None: today's id,image,prompt manifest
    >>> export.format, export.label
    ('shopify', 'Shopify product CSV (current headers)')
"""
from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.errors import ConfigError
from pipeline.inputs.stores import merchant, plain, shopify, woocommerce
from pipeline.inputs.stores.model import Export
from pipeline.inputs.stores.tables import delimiter, open_text

SNIFF_CHARS = 64 * 1024
SUFFIXES = (".csv", ".tsv", ".xml", ".parquet", ".jsonl", ".ndjson")
FORMATS = ("auto", "shopify", "woocommerce", "merchant-center", "plain")
_Opener = Callable[[Path | str, str, Any, list[str]], Export]
# The store formats that read a header row, in the order auto-detection tries them.
REGISTRY: dict[str, tuple[Callable[[list[str]], bool], _Opener]] = {
    "shopify": (lambda header: shopify.generation(header) is not None, shopify.open_export),
    "woocommerce": (woocommerce.matches, woocommerce.open_export),
    "merchant-center": (merchant.matches, merchant.open_export),
}


def open_store(path: Path | str, shown: str, fmt: str = "auto", columns: Mapping[str, str] | None = None,
               options: Mapping[str, Any] | None = None) -> Export | None:
    """The export at `path`, or None when it is a manifest of today's kind (id,image,prompt CSV or YAML)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in SUFFIXES:
        return None  # .yaml, or a type the manifest reader refuses by name
    if ext == ".parquet":
        return _plain(path, shown, options, plain.header_of_parquet(path, shown, options), columns, "parquet", fmt)
    head = _head(path, shown, options)
    if head is None:
        return None  # not UTF-8 text: the manifest reader says why, and where
    if head.lstrip().startswith("<"):
        if fmt not in ("auto", "merchant-center"):
            raise ConfigError(f"{shown}: is an XML file, not a {fmt} export; set store.format: merchant-center "
                              f"or auto")
        return merchant.open_xml(path, shown, options, _xml_root(head, shown))
    if ext in (".jsonl", ".ndjson") or head.lstrip().startswith("{"):
        return _plain(path, shown, options, plain.header_of_jsonl(path, shown, options), columns, "jsonl", fmt)
    header = plain.header_of_csv(path, shown, options)
    if fmt in REGISTRY:
        return REGISTRY[fmt][1](path, shown, options, header)
    if fmt == "auto":
        for matches, opener in REGISTRY.values():
            if matches(header):
                return opener(path, shown, options, header)
    if columns or delimiter(head.split("\n", 1)[0]) != ",":
        return _plain(path, shown, options, header, columns, "csv", fmt)
    if fmt == "auto" and not {"id", "image"} & set(header):
        raise ConfigError(f"{shown}: cannot tell which store exported it (columns: {', '.join(header[:12])}"
                          f"{', ...' if len(header) > 12 else ''}); it is neither a Shopify, WooCommerce nor "
                          f"Merchant Center export: name its id and picture columns in the config, e.g. "
                          f"`columns: {{id: sku, image: main_image_url}}`, or set store.format")
    return None  # id,image,prompt: the manifest reader of old


def _plain(path, shown, options, header, columns, kind, fmt) -> Export:
    if fmt not in ("auto", "plain"):
        raise ConfigError(f"{shown}: a {kind} table is read as store.format: plain, not {fmt}")
    return plain.open_export(path, shown, options, header, columns or {}, kind)


def _head(path: Path | str, shown: str, options) -> str | None:
    with open_text(path, shown, options) as handle:
        try:
            head = handle.read(SNIFF_CHARS)
        except UnicodeDecodeError:
            return None
    return None if "\0" in head else head


def _xml_root(head: str, shown: str) -> str:
    """The root element's local name: rss or feed."""
    try:
        for _, element in ET.iterparse(io.StringIO(head), events=("start",)):
            root = element.tag.rsplit("}", 1)[-1]
            if root not in ("rss", "feed"):
                raise ConfigError(f"{shown}: an XML file whose root is <{root}>, not an RSS 2.0 <rss> or Atom "
                                  f"<feed> product feed")
            return root
    except ET.ParseError as exc:
        if "no element found" not in str(exc) and "unclosed token" not in str(exc):
            line, column = exc.position
            raise ConfigError(f"{shown}: line {line}, column {column + 1}: the XML feed does not parse "
                              f"({str(exc).split(':')[0]})") from None
    raise ConfigError(f"{shown}: the XML feed has no root element")
