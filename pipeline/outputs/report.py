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
from datetime import datetime
from html import escape
from collections.abc import Collection, Mapping
from functools import partial
from itertools import groupby
from pathlib import Path

from pipeline.errors import OutputError
from pipeline.inputs.config import RunConfig
from pipeline.inputs.manifest import Manifest
from pipeline.media.previews import Previews
from pipeline.outputs import listing, stamps
from pipeline.outputs.cards import ORDER, Card, cards, current_ids, render
from pipeline.outputs.deck import Deck
from pipeline.store.atomic import write_atomically
from pipeline.store.checkpoint import Row

PAGE_SIZE = 500  # cards per page: about 0.5 MB of HTML
TITLES = {"review": "Held for review", "failed": "Failed", "pending": "Pending", "done": "Done"}
_PAGE_NAME = re.compile(r"report-([0-9]+)\.html")


def write_report(cfg: RunConfig, manifest: Manifest, rows: Mapping[str, Row], *,
                 summary: dict | None = None, stored: set[str] | None = None, force: bool = False) -> Path:
    """Write <output.dir>/report.html and its further pages (and refresh thumbs/); return page 1's path.

    `stored`: when output.dir is a storage URL, the names of the outputs in it; the report is then
    made in the local output.dir, with the same relative links, and uploaded beside them.

    Without variants the pages are written one after another, each page's cards made from its rows
    when it is written (outputs/deck.py). When nothing a card shows has changed since the last
    report (its stamp in state.dir), only page 1, with the summary, is made again; `force` makes
    every page (a page whose bytes are the same is still left alone)."""
    out_dir = cfg.output.dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        out_names = listing.read(out_dir) if stored is None else stored  # one read tells which outputs exist
    except OSError as exc:
        raise OutputError(f"cannot list {out_dir}: {exc.strerror or exc}") from None
    previews = Previews(out_dir)
    made = partial(_page_cards, cfg, out_names, previews, stored is not None)
    if cfg.variants:
        groups = cards(cfg, manifest, rows, out_names, previews, stored is not None)
        previews.finish()
        deck = Deck.of(groups, sum(rows[i].credits for i in current_ids(manifest) if i in rows))
    else:
        deck = Deck.scan(cfg, manifest, rows, extra=f"{PAGE_SIZE}\n{stored is not None}\n{_footer_links(cfg)}")
    book = _Book(cfg, deck, made, summary or {})
    stamp = cfg.state_dir / "report.stamp.json"
    if not force and deck.digest is not None and stamps.current(stamp, _stamp_digest(deck, previews), _paths(out_dir, book, 2)):
        _write_if_changed(out_dir / page_name(1), book.page(1).encode("utf-8"))  # the rest is as it was
        return out_dir / page_name(1)
    with contextlib.suppress(OSError):
        stamp.unlink()  # gone until every page is written
    for number in range(book.pages, 0, -1):  # page 1 last: by then every page it links to exists
        _write_if_changed(out_dir / page_name(number), book.page(number).encode("utf-8"))
    if not cfg.variants:
        previews.finish()
    with os.scandir(out_dir) as entries:  # pages an earlier, bigger run left behind; a stream, not a list
        stale = [entry.name for entry in entries if entry.name.startswith("report-")
                 and (match := _PAGE_NAME.fullmatch(entry.name)) and int(match[1]) > book.pages]
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    if deck.digest is not None:
        stamps.save(stamp, _stamp_digest(deck, previews), _paths(out_dir, book, 2))
    return out_dir / page_name(1)


def _page_cards(cfg: RunConfig, out_names: Collection[str], previews: Previews, stored: bool, manifest: Manifest,
                rows: dict[str, Row]) -> dict[str, list[Card]]:
    """One page's cards, their previews made now (the page is written next)."""
    groups = cards(cfg, manifest, rows, out_names, previews, stored)
    previews.make_pending()
    return groups


def _stamp_digest(deck: Deck, previews: Previews) -> str:
    """The cards' digest and the previews they show (what thumbs/ holds)."""
    return f"{deck.digest}|{previews.state()}"


def _paths(out_dir: Path, book: "_Book", first: int) -> tuple[Path, ...]:
    return tuple(out_dir / page_name(number) for number in range(first, book.pages + 1))


def _footer_links(cfg: RunConfig) -> list[str]:
    return [name for name in ("results.csv", "results.parquet") if (cfg.output.dir / name).is_file()]


def make_previews(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], stored: set[str]) -> None:
    """The previews `write_report` would make, and no page: a shard's, when output.dir is a storage
    URL, uploaded for the report that `pipeline report` makes where the shard's disk is not."""
    previews = Previews(cfg.output.dir)
    cards(cfg, manifest, rows, stored, previews, True)
    previews.finish()


def page_name(number: int) -> str:
    return "report.html" if number == 1 else f"report-{number}.html"


def _write_if_changed(target: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return  # a no-op rerun leaves the page, its mtime and the disk alone
    write_atomically(target, data)


# -- the pages -----------------------------------------------------------------------------------

class _Book:
    """The report's pages: page 1 has the summary; every page has the counts and page links."""

    def __init__(self, cfg: RunConfig, deck: Deck, made, summary: dict):
        self.cfg, self.deck, self.made, self.credits, self.summary = cfg, deck, made, deck.credits, summary
        self.counts = deck.counts  # cards per status
        self.pages = max(1, -(-sum(self.counts.values()) // PAGE_SIZE))
        # What the summary counts: items, or with variants each item's variants, as results.csv does.
        self.tally = deck.tally
        self.first: dict[str, int] = {}  # status -> index of its first card
        start = 0
        for status in ORDER:
            if self.counts[status]:
                self.first[status] = start
                start += self.counts[status]
        self.footer = " · ".join(f'<a href="{name}">{name}</a>' for name in _footer_links(cfg))

    def href(self, status: str, number: int) -> str:
        """Link to a status's section from page `number`."""
        page = self.first[status] // PAGE_SIZE + 1
        return f"#{status}" if page == number else f"{page_name(page)}#{status}"

    def page(self, number: int) -> str:
        start = (number - 1) * PAGE_SIZE
        chunk = self.deck.cards(start, start + PAGE_SIZE, self.made)
        name = escape(self.cfg.config_path.name)
        total = sum(self.counts.values())  # items (rows of variants count once)
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
        if (units := sum(self.tally.values())) != total:  # with variants, the summary counts these
            items += f" · {units:,} variants"
        if number == 1:
            generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            parts.append(f'<div class="head"><h1>Batch report</h1><p class="muted"><span class="mono">'
                         f'{name}</span> · {items} · generated {escape(generated)}</p></div>\n')
            parts.append(self._stats())
            if self.summary.get("history") is not None:
                parts.append(self._runs(self.summary["history"]))
        else:
            # No clock and no elapsed time here: an unchanged page stays byte-identical, so is not rewritten.
            line = " · ".join(f'{self.tally[kind]:,} {kind}' for kind in ("done", "failed", "pending"))
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
            parts.extend(render(card) for card in group)
            parts.append("</div>\n</section>\n")
        if not chunk and number == 1:
            parts.append('<p class="muted empty">The manifest has no items.</p>\n')
        parts.append(f'{nav}</main>\n<footer class="muted">{self.footer}</footer>\n</body>\n</html>\n')
        return "".join(parts)

    def _stats(self) -> str:
        stats: list[tuple[str, str, int | str]] = [("review", "Held for review", self.tally["review"])] * bool(
            self.tally["review"]) + [
            ("done", "Done", self.tally["done"]), ("failed", "Failed", self.tally["failed"]),
            ("pending", "Pending", self.tally["pending"]), ("", "Credits spent", self.credits)]
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
        spans = "".join(f'<span class="{kind}" style="flex-grow:{self.tally[kind]}"></span>'
                        for kind in ("done", "review", "failed", "pending") if self.tally[kind])
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


def _options(options: dict) -> str:
    """A run's options as its command line would show them."""
    if options.get("command") == "review":
        return ", ".join(f"{word}: {' '.join(options.get(word) or [])}" for word in ("approved", "rejected")
                         if options.get(word)) + (f" ({options['reason']})" if options.get("reason") else "")
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
--pending-bg:#fdf0d9;--link:#2457c5;--review:#7a3fc2}
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
.bar span.review,.card.review{background:var(--review)}.card.review{border-top:3px solid var(--review);background:var(--card)}
.badge.review,.stat.review .value{color:var(--review)}.cmd{margin:6px 0 0;padding:6px 8px;white-space:pre-wrap;
word-break:break-all;background:var(--frame);border-radius:6px;font-size:12px;user-select:all}
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
.card.row{grid-column:1/-1;contain-intrinsic-size:auto 420px}
.strip{display:grid;grid-template-columns:repeat(var(--n),minmax(150px,240px));gap:10px;overflow-x:auto}
.variant{display:flex;flex-direction:column;gap:6px}
.variant figcaption{display:flex;align-items:center;justify-content:space-between;gap:6px;text-transform:none;
letter-spacing:0;font-size:12px;color:var(--text)}
.variant figcaption .badge{font-size:10px;padding:1px 6px}.variant .prompt{font-size:12px;color:var(--muted)}
.variant .meta{margin:0}
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
