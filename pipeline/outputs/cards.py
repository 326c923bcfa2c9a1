"""The report's cards: what each item shows (its input, its output or each variant's, the order) and
their markup. `outputs/report.py` lays them out in pages.

Without variants, one card per item: input beside output. With variants, one card row per item: its
input, then every variant's output side by side, each with its own status, in the config's order.
"""
from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from html import escape
from operator import attrgetter
from urllib.parse import quote

from pipeline.inputs.config import RunConfig, output_name_problem
from pipeline.inputs.manifest import Manifest
from pipeline.media.previews import THUMB_SIZE, Previews
from pipeline.outputs.renditions import rendition_paths
from pipeline.outputs import listing, review_card as review
from pipeline.outputs.results import status_of
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import chunks, rows_of

ORDER = ("review", "failed", "pending", "done")  # held for review first: someone must look at them
# Names made only of these need no quoting in an href (quote() leaves them as they are): most
# output names are, and the check is 10x cheaper than quote() on 100k cards.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]+").fullmatch


@dataclass(slots=True)
class Card:
    id: str
    status: str
    prompt: str = ""
    error: str | None = None
    order_id: str | None = None
    credits: int = 0
    attempts: int = 0
    source_src: str | None = None    # <img src>, relative to output.dir
    output_src: str | None = None
    output_href: str | None = None   # the output file, relative to output.dir, URL-quoted
    source_note: str = "Input unavailable"  # shown when there is no source_src
    variant: str | None = None       # a variant's card: its name (shown inside its item's row)
    variants: list[Card] = field(default_factory=list)  # an item's row: its variants' cards, in order
    renditions: tuple = ()           # (name, href relative to output.dir) of each rendition made
    extra: str = ""                  # a held item's score, heat-map and review commands (outputs/review.py)

    def source_preview(self, src: str, shown: str | None) -> None:
        """Previews.show's late answer for the input image."""
        if shown:
            self.source_src = shown
        elif os.path.exists(src):
            self.source_note = "Unreadable image"

    def output_preview(self, shown: str | None) -> None:
        self.output_src = shown


def current_ids(manifest: Manifest) -> list[str]:
    return [i.id for i in manifest.items] + [b.id for b in manifest.invalid if b.id]


def cards(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], out_names: Collection[str],
           previews: Previews, stored: bool = False) -> dict[str, list[Card]]:
    """Cards for every current item by status (as in results.status_counts), each list by id; with
    variants, `manifest` is results.by_variant's (one entry per item and variant) and each item is one
    row card, filed under its worst variant's status.

    A file the checkpoint has a SHA-256 for is known by it, with no system call: every run checks
    inputs and outputs against the checkpoint before trusting it. Any other file costs a stat.
    """
    out_dir = str(cfg.output.dir)
    prefix = os.path.join(out_dir, "")
    sources = os.path.join(cfg.state_dir, "sources")
    groups: dict[str, list[Card]] = {status: [] for status in ORDER}
    units: list[Card] = []  # with variants: every (item, variant)'s card, to be put in its item's row
    made = rendition_paths(cfg, manifest, rows)
    for number, (item, row, present) in enumerate(_with_rows(manifest.items, rows, out_names)):
        status = status_of(row)
        if row is None:
            card, sha = Card(item.id, status, item.prompt), None
        else:
            card = Card(item.id, status, item.prompt, None if status in ("done", "review") else row.error,
                         row.order_id, row.credits, row.attempts)
            sha = row.image_sha256
        (units if cfg.variants else groups[status]).append(card)
        card.renditions = tuple((name, quote(paths[number])) for name, paths in made.items() if paths[number])
        if item.image_path is not None:
            src = str(item.image_path)
        elif sha:
            src = os.path.join(sources, sha)  # the fetched copy of a URL
        else:
            card.source_note = "Remote image not fetched yet"
            src = None
        if src is not None and (key := previews.key("in", sha, src)) is not None:
            card.source_src = previews.show(key, src, None, partial(card.source_preview, src))
        if status == "review":
            card.extra = review.card_html(cfg, row, (cfg.output.dir / review.heatmap_name(
                row.output_sha256 or "")).is_file())
        if status not in ("done", "review") or not (name := row.output_path):
            continue
        # The manifest's names were checked to stay inside output.dir when it was loaded; any other
        # name comes from a file on disk and must prove it, symlinks resolved.
        if stored:  # a bucket's listing names every output, those in folders too
            found = name in present and (name == item.output_name or not output_name_problem(name))
        else:
            found = (name == item.output_name or _inside(out_dir, name)) and (
                name in present if "/" not in name else os.path.isfile(prefix + name))
        if found:
            if key := previews.key("out", row.output_sha256, prefix + name):
                card.output_href = href = name if _URL_SAFE(name) else quote(name)
                card.output_src = previews.show(key, prefix + name, href, card.output_preview)
    if cfg.variants:
        for row_card in _rows(cfg, units):
            groups[row_card.status].append(row_card)
    for bad in manifest.invalid:
        groups["failed"].append(Card(bad.id or f"row {bad.row}", "failed", error="; ".join(bad.problems),
                                      source_note="Invalid manifest row"))
    for group in groups.values():
        group.sort(key=attrgetter("id"))
    return groups


def _with_rows(items: list, rows: Mapping[str, Row], out_names: Collection[str]) -> Iterator[tuple]:
    """(item, its row or None, those of the batch's outputs in out_names), the rows read a batch at a time."""
    for chunk in chunks(items):
        found = rows_of(rows, [item.id for item in chunk])
        present = listing.among(out_names, [row.output_path for row in found.values() if row.output_path])
        yield from ((item, found.get(item.id), present) for item in chunk)


def _rows(cfg: RunConfig, units: list[Card]) -> list[Card]:
    """One row card per item from its variants' cards, which by_variant lists item by item in the
    config's order of variants."""
    names = [variant.name for variant in cfg.variants]
    found = []
    for start in range(0, len(units), len(names)):
        group = units[start:start + len(names)]
        for name, card in zip(names, group):
            card.variant = name
        first = group[0]
        status = next(status for status in ORDER if any(card.status == status for card in group))
        # The input's preview may be answered late (Previews.finish), to the first variant's card: read there.
        found.append(Card(first.id.removesuffix(f"/{names[0]}"), status, credits=sum(c.credits for c in group),
                          variants=group))
    return found


def _inside(out_dir: str, name: str) -> bool:
    root = os.path.realpath(out_dir)
    return os.path.realpath(os.path.join(out_dir, name)).startswith(root + os.sep)




def render(card: Card) -> str:
    """A card's markup: input beside output, or an item's row of variants."""
    if card.variants:
        return _row(card)
    status = card.status
    source, output = _source(card), _output(card)
    order = f'<div><dt>Order</dt><dd class="mono">{escape(card.order_id)}</dd></div>' if card.order_id else ""
    attempts = f"<div><dt>Attempts</dt><dd>{card.attempts}</dd></div>" if card.attempts else ""
    item_id = escape(card.id)
    # A pending item's message is a note (it will be retried), not a failure.
    kind = "error" if status == "failed" else "note"
    error = f'<p class="{kind}">{escape(card.error)}</p>' if card.error else ""
    prompt = f'<p class="prompt">{escape(card.prompt)}</p>' if card.prompt else ""
    prompt += _renditions(card)
    return (f'<article class="card {status}"><header><h3 class="mono" title="{item_id}">{item_id}</h3>'
            f'<span class="badge {status}">{status}</span></header>'
            f'<div class="pair"><figure>{source}<figcaption>Input</figcaption></figure>'
            f'<figure>{output}<figcaption>Output</figcaption></figure></div>{prompt}{error}'
            f'<dl class="meta">{order}<div><dt>Credits</dt><dd>{int(card.credits or 0)}</dd></div>'
            f'{attempts}</dl>{card.extra}</article>\n')


def _source(card: Card) -> str:
    if src := card.source_src:
        return f'<div class="frame"><img src="{src}" alt="input"{_IMG}></div>'
    return _frame(_placeholder(card.source_note))


def _output(card: Card) -> str:
    if src := card.output_src:
        return (f'<a class="frame" href="{card.output_href}" title="Open the full-size output">'
                f'<img src="{src}" alt="output"{_IMG}></a>')
    if card.output_href:
        return f'<a class="frame" href="{card.output_href}">{_placeholder("Preview unavailable")}</a>'
    return _NO_OUTPUT[card.status]


def _row(card: Card) -> str:
    """An item with variants: its input, then each variant's output with its status, prompt and order."""
    item_id = escape(card.id)
    figures = [f'<figure>{_source(card.variants[0])}<figcaption>Input</figcaption></figure>']
    for unit in card.variants:
        name = escape(unit.variant or "")
        kind = "error" if unit.status == "failed" else "note"
        lines = [f'<p class="prompt">{escape(unit.prompt)}</p>' if unit.prompt else "",
                 f'<p class="{kind}">{escape(unit.error)}</p>' if unit.error else "", _renditions(unit)]
        meta = [f'<div><dt>Order</dt><dd class="mono">{escape(unit.order_id)}</dd></div>' if unit.order_id else "",
                f"<div><dt>Credits</dt><dd>{int(unit.credits or 0)}</dd></div>",
                f"<div><dt>Attempts</dt><dd>{unit.attempts}</dd></div>" if unit.attempts else ""]
        figures.append(f'<figure class="variant {unit.status}" data-id="{escape(unit.id)}">{_output(unit)}'
                       f'<figcaption><span class="mono" title="{name}">{name}</span>'
                       f'<span class="badge {unit.status}">{unit.status}</span></figcaption>{"".join(lines)}'
                       f'<dl class="meta">{"".join(meta)}</dl></figure>')
    return (f'<article class="card row {card.status}" data-id="{item_id}"><header><h3 class="mono" '
            f'title="{item_id}">{item_id}</h3><span class="badge {card.status}">{card.status}</span></header>'
            f'<div class="strip" style="--n:{len(figures)}">{"".join(figures)}</div>'
            f'<dl class="meta"><div><dt>Variants</dt><dd>{len(card.variants)}</dd></div>'
            f'<div><dt>Credits</dt><dd>{int(card.credits or 0)}</dd></div></dl></article>\n')


# The frame's size, for layout before loading; CSS keeps each image's own aspect ratio.
_IMG = f' loading="lazy" decoding="async" width="{THUMB_SIZE}" height="{THUMB_SIZE}"'


def _renditions(card: Card) -> str:
    """Links to the card's renditions (`output.renditions`), by name."""
    if not card.renditions:
        return ""
    return ('<p class="renditions">Renditions: ' + " · ".join(
        f'<a href="{href}">{escape(name)}</a>' for name, href in card.renditions) + "</p>")


def _frame(inner: str) -> str:
    return f'<div class="frame">{inner}</div>'


def _placeholder(text: str) -> str:
    return f'<span class="placeholder">{escape(text)}</span>'


_NO_OUTPUT = {status: _frame(_placeholder(text)) for status, text in (
    ("done", "Output file missing"), ("failed", "No output"), ("pending", "Not generated yet"),
    ("review", "Output file missing"))}
