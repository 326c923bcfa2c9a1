"""report.html: a self-contained before/after gallery over output.dir, split into pages.

    path = write_report(cfg, manifest, ckpt.rows(), summary={"elapsed_s": 42.0})
    # -> <output.dir>/report.html (summary, page 1), report-2.html, ...; previews in thumbs/

Cards go failures first, then pending, then done, PAGE_SIZE to a page, so a big catalog stays pages
a browser can open; a page whose bytes would not change is not rewritten. An image that is small and
in a format browsers show is its own preview: an output is linked where it is, an input (outside
output.dir) is hard-linked or copied into thumbs/. Others get a JPEG thumbnail there. A preview is
named by its image's SHA-256 in the checkpoint (else by its path, size and mtime), so an unchanged
image is never read again; thumbs/.direct lists the outputs shown as themselves, and previews no
longer used are deleted. Every link is relative to output.dir, so the folder can be moved or zipped.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from html import escape
from itertools import chain, groupby
from operator import attrgetter
from pathlib import Path
from urllib.parse import quote

from pipeline.store.checkpoint import Row
from pipeline.inputs.config import RunConfig, output_name_problem
from pipeline.errors import OutputError
from pipeline.inputs.manifest import Manifest
from pipeline.outputs.renditions import rendition_paths
from pipeline.outputs.results import status_of
from pipeline.media.previews import THUMB_SIZE, Previews
from pipeline.store.atomic import write_atomically

PAGE_SIZE = 500  # cards per page: about 0.5 MB of HTML
ORDER = ("failed", "pending", "done")
TITLES = {"failed": "Failed", "pending": "Pending", "done": "Done"}
_PAGE_NAME = re.compile(r"report-([0-9]+)\.html")
# Names made only of these need no quoting in an href (quote() leaves them as they are): most
# output names are, and the check is 10x cheaper than quote() on 100k cards.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]+").fullmatch


def write_report(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], *,
                 summary: dict | None = None, stored: set[str] | None = None) -> Path:
    """Write <output.dir>/report.html and its further pages (and refresh thumbs/); return page 1's path.

    `stored`: when output.dir is a storage URL, the names of the outputs in it; the report is then
    made in the local output.dir, with the same relative links, and uploaded beside them."""
    out_dir = cfg.output.dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        listing = os.listdir(out_dir)  # one call tells which outputs exist, and which pages
    except OSError as exc:
        raise OutputError(f"cannot list {out_dir}: {exc.strerror or exc}") from None
    previews = Previews(out_dir)
    groups = _cards(cfg, manifest, rows, set(listing) if stored is None else stored, previews, stored is not None)
    previews.finish()
    credits = sum(rows[i].credits for i in _current_ids(manifest) if i in rows)
    book = _Book(cfg, groups, credits, summary or {})
    for number in range(book.pages, 0, -1):  # page 1 last: by then every page it links to exists
        _write_if_changed(out_dir / page_name(number), book.page(number).encode("utf-8"))
    for name in listing:  # pages an earlier, bigger run left behind
        if name.startswith("report-") and (match := _PAGE_NAME.fullmatch(name)) and int(match[1]) > book.pages:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    return out_dir / page_name(1)


def make_previews(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], stored: set[str]) -> None:
    """The previews `write_report` would make, and no page: a shard's, when output.dir is a storage
    URL, uploaded for the report that `pipeline report` makes where the shard's disk is not."""
    previews = Previews(cfg.output.dir)
    _cards(cfg, manifest, rows, stored, previews, True)
    previews.finish()


def page_name(number: int) -> str:
    return "report.html" if number == 1 else f"report-{number}.html"


def _write_if_changed(target: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return  # a no-op rerun leaves the page, its mtime and the disk alone
    write_atomically(target, data)


# -- what each card shows ------------------------------------------------------------------------

@dataclass(slots=True)
class _Card:
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
    renditions: tuple = ()           # (name, href relative to output.dir) of each rendition made

    def source_preview(self, src: str, shown: str | None) -> None:
        """Previews.show's late answer for the input image."""
        if shown:
            self.source_src = shown
        elif os.path.exists(src):
            self.source_note = "Unreadable image"

    def output_preview(self, shown: str | None) -> None:
        self.output_src = shown


def _current_ids(manifest: Manifest) -> list[str]:
    return [i.id for i in manifest.items] + [b.id for b in manifest.invalid if b.id]


def _cards(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], out_names: set[str],
           previews: Previews, stored: bool = False) -> dict[str, list[_Card]]:
    """Cards for every current item by status (as in results.status_counts), each list by id.

    A file the checkpoint has a SHA-256 for is known by it, with no system call: every run checks
    inputs and outputs against the checkpoint before trusting it. Any other file costs a stat.
    """
    out_dir = str(cfg.output.dir)
    prefix = os.path.join(out_dir, "")
    sources = os.path.join(cfg.state_dir, "sources")
    groups: dict[str, list[_Card]] = {status: [] for status in ORDER}
    made = rendition_paths(cfg, manifest, rows)
    for number, item in enumerate(manifest.items):
        row = rows.get(item.id)
        status = status_of(row)
        if row is None:
            card, sha = _Card(item.id, status, item.prompt), None
        else:
            card = _Card(item.id, status, item.prompt, None if status == "done" else row.error,
                         row.order_id, row.credits, row.attempts)
            sha = row.image_sha256
        groups[status].append(card)
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
        if status != "done" or not (name := row.output_path):
            continue
        # The manifest's names were checked to stay inside output.dir when it was loaded; any other
        # name comes from a file on disk and must prove it, symlinks resolved.
        if stored:  # a bucket's listing names every output, those in folders too
            found = name in out_names and (name == item.output_name or not output_name_problem(name))
        else:
            found = (name == item.output_name or _inside(out_dir, name)) and (
                name in out_names if "/" not in name else os.path.isfile(prefix + name))
        if found:
            if key := previews.key("out", row.output_sha256, prefix + name):
                card.output_href = href = name if _URL_SAFE(name) else quote(name)
                card.output_src = previews.show(key, prefix + name, href, card.output_preview)
    for bad in manifest.invalid:
        groups["failed"].append(_Card(bad.id or f"row {bad.row}", "failed", error="; ".join(bad.problems),
                                      source_note="Invalid manifest row"))
    for group in groups.values():
        group.sort(key=attrgetter("id"))
    return groups


def _inside(out_dir: str, name: str) -> bool:
    root = os.path.realpath(out_dir)
    return os.path.realpath(os.path.join(out_dir, name)).startswith(root + os.sep)


# -- the pages -----------------------------------------------------------------------------------

class _Book:
    """The report's pages: page 1 has the summary; every page has the counts and page links."""

    def __init__(self, cfg: RunConfig, groups: dict[str, list[_Card]], credits: int, summary: dict):
        self.cfg, self.credits, self.summary = cfg, credits, summary
        self.cards = list(chain.from_iterable(groups[status] for status in ORDER))  # failures first
        self.pages = max(1, -(-len(self.cards) // PAGE_SIZE))
        self.counts = Counter({status: len(group) for status, group in groups.items()})
        self.first: dict[str, int] = {}  # status -> index of its first card
        start = 0
        for status in ORDER:
            if self.counts[status]:
                self.first[status] = start
                start += self.counts[status]
        links = [name for name in ("results.csv", "results.parquet") if (cfg.output.dir / name).is_file()]
        self.footer = " · ".join(f'<a href="{name}">{name}</a>' for name in links)

    def href(self, status: str, number: int) -> str:
        """Link to a status's section from page `number`."""
        page = self.first[status] // PAGE_SIZE + 1
        return f"#{status}" if page == number else f"{page_name(page)}#{status}"

    def page(self, number: int) -> str:
        start = (number - 1) * PAGE_SIZE
        chunk = self.cards[start:start + PAGE_SIZE]
        name = escape(self.cfg.config_path.name)
        total = sum(self.counts.values())
        title = f"Batch report · {name}" + (f" · page {number}" if number > 1 else "")
        parts = [
            '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            # Prompts and errors are user data: even if escaping ever slipped, no script may run.
            '<meta http-equiv="Content-Security-Policy" content="script-src \'none\'; object-src \'none\'; '
            'base-uri \'none\'; form-action \'none\'">\n',
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header class=\"top\">\n",
        ]
        items = f'{total:,} item{"" if total == 1 else "s"}'
        if number == 1:
            generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            parts.append(f'<div class="head"><h1>Batch report</h1><p class="muted"><span class="mono">'
                         f'{name}</span> · {items} · generated {escape(generated)}</p></div>\n')
            parts.append(self._stats())
            if self.summary.get("history") is not None:
                parts.append(self._runs(self.summary["history"]))
        else:
            # No clock and no elapsed time here: an unchanged page stays byte-identical, so is not rewritten.
            line = " · ".join(f'{self.counts[kind]:,} {kind}' for kind in ("done", "failed", "pending"))
            parts.append(f'<div class="head"><h1><a href="{page_name(1)}">Batch report</a></h1>'
                         f'<p class="muted"><span class="mono">{name}</span> · {items} · {line} · '
                         f'page {number} of {self.pages}</p></div>\n')
        parts.append(self._bar())
        nav = self._nav(number)
        parts.append(f"</header>\n<main>\n{nav}")
        index = start
        for status, cards in groupby(chunk, key=lambda card: card.status):
            group = list(cards)
            offset = index - self.first[status]  # of this group's first card, within its status
            index += len(group)
            anchor = f' id="{status}"' if offset == 0 else ""
            span = ""  # which of the status's cards this page shows, when not all
            if len(group) < self.counts[status]:
                span = f"{offset + 1:,}" + (f"–{offset + len(group):,}" if len(group) > 1 else "")
                span = f' <span class="count">· {span}</span>'
            parts.append(f'<section{anchor}><h2>{TITLES[status]} <span class="count">'
                         f'{self.counts[status]:,}</span>{span}</h2>\n<div class="grid">\n')
            parts.extend(_card(card) for card in group)
            parts.append("</div>\n</section>\n")
        if not self.cards:
            parts.append('<p class="muted empty">The manifest has no items.</p>\n')
        parts.append(f'{nav}</main>\n<footer class="muted">{self.footer}</footer>\n</body>\n</html>\n')
        return "".join(parts)

    def _stats(self) -> str:
        stats: list[tuple[str, str, int | str]] = [
            ("done", "Done", self.counts["done"]), ("failed", "Failed", self.counts["failed"]),
            ("pending", "Pending", self.counts["pending"]), ("", "Credits spent", self.credits)]
        if self.summary.get("elapsed_s") is not None:
            stats.append(("", "Elapsed", _duration(float(self.summary["elapsed_s"]))))
        if (history := self.summary.get("history")) is not None:
            stats.append(("", "Credits, all runs", history.all_time_credits))
        parts = ['<div class="stats">']
        for kind, label, value in stats:
            link = f' href="{self.href(kind, 1)}"' if kind in self.first else ""
            tag = "a" if link else "div"
            shown = f"{value:,}" if isinstance(value, int) else value
            parts.append(f'<{tag} class="stat {kind}"{link}><span class="value">{escape(shown)}</span>'
                         f'<span class="label">{label}</span></{tag}>')
        parts.append("</div>\n")
        return "".join(parts)

    def _runs(self, history) -> str:
        """This run and the ones before it, from the checkpoint's history."""
        if not history.runs:
            return ""
        live = self.summary.get("elapsed_s") is not None  # written by a run: its own row is not ended yet
        rows = []
        for number, run in enumerate(history.runs):
            this = live and number == 0 and run.ended_at is None
            elapsed = self.summary["elapsed_s"] if this else run.elapsed_s
            label = f"#{run.id}" + (" (this run)" if this else "")
            if run.note:
                label, when = "before history", "—"
            else:
                when = datetime.fromtimestamp(run.started_at).astimezone().strftime("%Y-%m-%d %H:%M")
            cells = (label, when, _duration(float(elapsed)) if elapsed is not None else "—",
                     "—" if run.exit_code is None else str(run.exit_code), f"{run.credits:,}",
                     f"{run.submits:,}", run.version or "—", _options(run.options))
            rows.append("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>")
        shown = f"the last {len(history.runs)} of {history.total_runs:,}" if history.total_runs > len(
            history.runs) else f"all {history.total_runs:,}"
        head = "".join(f"<th>{name}</th>" for name in (
            "Run", "Started", "Elapsed", "Exit", "Credits", "Orders", "Version", "Options"))
        return (f'<details class="runs" open><summary>Runs ({shown}) · {history.all_time_credits:,} credits '
                f'in all</summary><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
                f'</table></details>\n')

    def _bar(self) -> str:
        spans = "".join(f'<span class="{kind}" style="flex-grow:{self.counts[kind]}"></span>'
                        for kind in ("done", "failed", "pending") if self.counts[kind])
        return f'<div class="bar" aria-hidden="true">{spans}</div>\n'

    def _nav(self, number: int) -> str:
        """Previous, next, the first and last pages and two either side of this one."""
        if self.pages == 1:
            return ""
        parts = ['<nav class="pages" aria-label="Report pages">']
        parts.append(f'<a rel="prev" href="{page_name(number - 1)}">‹ Previous</a>' if number > 1
                     else '<span class="off">‹ Previous</span>')
        last = 0
        for n in sorted({1, self.pages, *range(max(1, number - 2), min(self.pages, number + 2) + 1)}):
            if n > last + 1:
                parts.append('<span class="gap">…</span>')
            parts.append(f'<span class="current" aria-current="page">{n}</span>' if n == number
                         else f'<a href="{page_name(n)}">{n}</a>')
            last = n
        parts.append(f'<a rel="next" href="{page_name(number + 1)}">Next ›</a>' if number < self.pages
                     else '<span class="off">Next ›</span>')
        parts.append("</nav>\n")
        return "".join(parts)


def _card(card: _Card) -> str:
    status = card.status
    if src := card.source_src:
        source = f'<div class="frame"><img src="{src}" alt="input"{_IMG}></div>'
    else:
        source = _frame(_placeholder(card.source_note))
    if src := card.output_src:
        output = (f'<a class="frame" href="{card.output_href}" title="Open the full-size output">'
                  f'<img src="{src}" alt="output"{_IMG}></a>')
    elif card.output_href:
        output = f'<a class="frame" href="{card.output_href}">{_placeholder("Preview unavailable")}</a>'
    else:
        output = _NO_OUTPUT[status]
    order = f'<div><dt>Order</dt><dd class="mono">{escape(card.order_id)}</dd></div>' if card.order_id else ""
    attempts = f"<div><dt>Attempts</dt><dd>{card.attempts}</dd></div>" if card.attempts else ""
    item_id = escape(card.id)
    # A pending item's message is a note (it will be retried), not a failure.
    kind = "error" if status == "failed" else "note"
    error = f'<p class="{kind}">{escape(card.error)}</p>' if card.error else ""
    prompt = f'<p class="prompt">{escape(card.prompt)}</p>' if card.prompt else ""
    if card.renditions:
        prompt += ('<p class="renditions">Renditions: ' + " · ".join(
            f'<a href="{href}">{escape(name)}</a>' for name, href in card.renditions) + "</p>")
    return (f'<article class="card {status}"><header><h3 class="mono" title="{item_id}">{item_id}</h3>'
            f'<span class="badge {status}">{status}</span></header>'
            f'<div class="pair"><figure>{source}<figcaption>Input</figcaption></figure>'
            f'<figure>{output}<figcaption>Output</figcaption></figure></div>{prompt}{error}'
            f'<dl class="meta">{order}<div><dt>Credits</dt><dd>{int(card.credits or 0)}</dd></div>'
            f'{attempts}</dl></article>\n')


# The frame's size, for layout before loading; CSS keeps each image's own aspect ratio.
_IMG = f' loading="lazy" decoding="async" width="{THUMB_SIZE}" height="{THUMB_SIZE}"'


def _frame(inner: str) -> str:
    return f'<div class="frame">{inner}</div>'


def _placeholder(text: str) -> str:
    return f'<span class="placeholder">{escape(text)}</span>'


_NO_OUTPUT = {status: _frame(_placeholder(text)) for status, text in (
    ("done", "Output file missing"), ("failed", "No output"), ("pending", "Not generated yet"))}


def _options(options: dict) -> str:
    """A run's options as its command line would show them."""
    words = ["--sandbox"] if options.get("api") == "sandbox" else []
    words += [flag for flag, key in (("--force", "force"), ("--skip-invalid", "skip_invalid")) if options.get(key)]
    if options.get("only_count"):
        words.append(f"--only ({options['only_count']:,} ids)")
    if options.get("shard"):
        words.append(f"--shard {options['shard']}")
    return " ".join(words) or "—"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


CSS = """
:root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--line:#e2e5ea;--text:#1c2026;--muted:#667080;
--frame:#eef0f3;--done:#1f8a4c;--done-bg:#e3f4ea;--failed:#c2362f;--failed-bg:#fbe7e5;--pending:#a66300;
--pending-bg:#fdf0d9;--link:#2457c5}
@media (prefers-color-scheme:dark){:root{--bg:#111317;--card:#1a1d23;--line:#2b3038;--text:#e5e7eb;
--muted:#98a1ae;--frame:#0d0f12;--done:#4cc982;--done-bg:#173225;--failed:#f07167;--failed-bg:#3a1b1a;
--pending:#f0b54a;--pending-bg:#3a2d14;--link:#8ab4ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
a{color:var(--link)}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:var(--muted)}
.top{background:var(--card);border-bottom:1px solid var(--line);padding:24px 32px 0}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px}
h1{font-size:22px;margin:0;font-weight:650}
.head p{margin:0}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.stat{display:flex;flex-direction:column;min-width:120px;padding:10px 16px;border:1px solid var(--line);
border-radius:10px;text-decoration:none;color:inherit;background:var(--bg)}
.stat .value{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.stat .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.stat.done .value{color:var(--done)}.stat.failed .value{color:var(--failed)}
.stat.pending .value{color:var(--pending)}
a.stat:hover{border-color:var(--muted)}
.bar{display:flex;height:6px;margin:0 -32px;background:var(--line)}
.bar span.done{background:var(--done)}.bar span.failed{background:var(--failed)}
.bar span.pending{background:var(--pending)}
main{padding:8px 32px 32px}
h2{font-size:16px;margin:24px 0 12px;font-weight:650}
h2 .count{color:var(--muted);font-weight:500}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(340px,100%),1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px;
display:flex;flex-direction:column;gap:8px;min-width:0;
content-visibility:auto;contain-intrinsic-size:auto 460px}
.card.failed{border-top:3px solid var(--failed)}.card.pending{border-top:3px solid var(--pending)}
.card header{display:flex;align-items:center;justify-content:space-between;gap:8px}
h3{font-size:13px;margin:0;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{flex:none;font-size:11px;font-weight:650;text-transform:uppercase;letter-spacing:.04em;
padding:2px 8px;border-radius:999px}
.badge.done{color:var(--done);background:var(--done-bg)}
.badge.failed{color:var(--failed);background:var(--failed-bg)}
.badge.pending{color:var(--pending);background:var(--pending-bg)}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}
figure{margin:0;min-width:0}
.frame{display:flex;align-items:center;justify-content:center;aspect-ratio:1/1;background:var(--frame);
border-radius:8px;overflow:hidden}
.frame img{width:100%;height:100%;object-fit:contain;display:block}
a.frame:hover{outline:2px solid var(--link);outline-offset:-2px}
.placeholder{color:var(--muted);font-size:12px;text-align:center;padding:8px}
figcaption{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em;margin-top:4px}
.prompt{margin:0;overflow-wrap:anywhere}
.error{margin:0;padding:6px 8px;border-radius:6px;background:var(--failed-bg);color:var(--failed);
font-size:13px;overflow-wrap:anywhere;white-space:pre-wrap}
.note{margin:0;padding:6px 8px;border-radius:6px;background:var(--pending-bg);color:var(--pending);
font-size:13px;overflow-wrap:anywhere;white-space:pre-wrap}
.meta{display:flex;flex-wrap:wrap;gap:2px 14px;margin:auto 0 0;font-size:12px;color:var(--muted)}
.meta div{display:flex;gap:4px;min-width:0}.meta dt::after{content:":"}
.meta dd{margin:0;color:var(--text);overflow-wrap:anywhere}
h1 a{color:inherit;text-decoration:none}.head+.bar{margin-top:18px}
.pages{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:20px 0 4px;font-size:13px}
.pages a,.pages span{padding:4px 10px;border:1px solid var(--line);border-radius:8px;background:var(--card);
text-decoration:none;font-variant-numeric:tabular-nums}
.pages .current{background:var(--link);border-color:var(--link);color:var(--card);font-weight:650}
.pages .off{color:var(--muted)}.pages .gap{border:none;background:none}
footer{padding:0 32px 32px;font-size:12px}
.runs{margin:0 0 18px;font-size:12px}.runs summary{cursor:pointer;color:var(--muted)}
.runs table{border-collapse:collapse;margin-top:6px}.runs th,.runs td{text-align:left;padding:2px 12px 2px 0;
font-variant-numeric:tabular-nums}.runs th{color:var(--muted);font-weight:600}
.empty{padding:32px 0}
@media (max-width:600px){.top{padding:16px 16px 0}.bar{margin:0 -16px}main{padding:4px 16px 16px}
footer{padding:0 16px 16px}.stat{min-width:0;flex:1 1 40%}}
""".replace("\n", "")
