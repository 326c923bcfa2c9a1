"""report.html: a self-contained before/after page over output.dir, with cached JPEG thumbnails.

    path = write_report(cfg, manifest, ckpt.rows(), summary={"elapsed_s": 42.0})
    # -> <output.dir>/report.html, thumbnails in <output.dir>/thumbs/

A thumbnail's name is a hash of its source's path, size and mtime: an unchanged source keeps its
name and is not read again, a changed one gets a new name, and names no longer used are deleted.
Every link in the page is relative to output.dir, so the folder can be moved or zipped whole.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageOps

from pipeline.checkpoint import Row
from pipeline.config import RunConfig
from pipeline.errors import OutputError
from pipeline.manifest import Manifest
from pipeline.results import status_counts, status_of
from pipeline.stages.download import write_atomically

THUMB_SIZE = 256
THUMB_QUALITY = 82
THUMBS = "thumbs"
_THUMB_NAME = re.compile(r"[0-9a-f]{24}-(?:in|out)\.jpg")
ORDER = ("failed", "pending", "done")
TITLES = {"failed": "Failed", "pending": "Pending", "done": "Done"}


def thumbnail(src: Path, dest: Path, size: int = THUMB_SIZE) -> bool:
    """Write an upright RGB JPEG of `src` within size x size to `dest`; False if `src` is unreadable.

    An unwritable `dest` raises OutputError: that is a broken output.dir, not a bad image.
    """
    try:
        with Image.open(src) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale (never below size), 3x faster
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if im.mode in ("P", "PA") or "transparency" in im.info else "RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            im = ImageOps.exif_transpose(im)  # after shrinking: rotating 256 px is cheaper
            if im.mode in ("RGBA", "LA"):
                # Transparent product shots sit on white, as a shop page would show them.
                flat = Image.new("RGB", im.size, "white")
                flat.paste(im.convert("RGBA"), mask=im.getchannel("A"))
                im = flat
            buffer = io.BytesIO()
            im.convert("RGB").save(buffer, "JPEG", quality=THUMB_QUALITY)
    except Exception:  # noqa: BLE001 - per-item boundary: a bad image becomes a placeholder, not a failed report
        return False
    write_atomically(dest, buffer.getvalue())
    return True


def write_report(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row], *,
                 summary: dict | None = None) -> Path:
    """Write <output.dir>/report.html (and refresh thumbs/); return its path. No network, no API."""
    out_dir = cfg.output.dir
    cards = _cards(cfg, manifest, rows)
    made = _make_thumbnails(out_dir / THUMBS, cards)
    counts = status_counts(manifest, rows)
    credits = sum(rows[i].credits for i in _current_ids(manifest) if i in rows)
    page = _page(cfg, cards, made, counts, credits, summary or {})
    target = out_dir / "report.html"
    write_atomically(target, page.encode("utf-8"))
    return target


# -- what each card shows ------------------------------------------------------------------------

@dataclass
class _Card:
    id: str
    status: str
    prompt: str = ""
    error: str | None = None
    order_id: str | None = None
    credits: int = 0
    attempts: int = 0
    source: Path | None = None       # input image to thumbnail
    output: Path | None = None       # output image to thumbnail and link
    output_href: str | None = None   # relative to output.dir, URL-quoted
    source_thumb: str | None = None  # thumbnail file names in thumbs/
    output_thumb: str | None = None
    source_missing: str = "Input unavailable"


def _current_ids(manifest: Manifest) -> list[str]:
    return [i.id for i in manifest.items] + [b.id for b in manifest.invalid if b.id]


def _cards(cfg: RunConfig, manifest: Manifest, rows: dict[str, Row]) -> list[_Card]:
    """Cards for every current item, failures first, then pending, then done; by id within."""
    out_root = os.path.realpath(cfg.output.dir)
    cards = []
    for item in manifest.items:
        row = rows.get(item.id)
        status = status_of(row)
        card = _Card(item.id, status, item.prompt, error=row.error if row and status != "done" else None,
                     order_id=row.order_id if row else None, credits=row.credits if row else 0,
                     attempts=row.attempts if row else 0)
        if item.image_path is not None:
            card.source = item.image_path
        elif row and row.image_sha256:
            card.source = cfg.state_dir / "sources" / row.image_sha256  # the fetched copy of a URL
        else:
            card.source_missing = "Remote image not fetched yet"
        if status == "done" and row and row.output_path:
            path = cfg.output.dir / row.output_path
            # The checkpoint is a file on disk: never link outside output.dir, whatever it says.
            if os.path.realpath(path).startswith(out_root + os.sep):
                card.output, card.output_href = path, quote(row.output_path)
        cards.append(card)
    for bad in manifest.invalid:
        cards.append(_Card(bad.id or f"row {bad.row}", "failed", error="; ".join(bad.problems),
                           source_missing="Invalid manifest row"))
    rank = {status: n for n, status in enumerate(ORDER)}
    cards.sort(key=lambda c: (rank[c.status], c.id))
    return cards


# -- thumbnails ----------------------------------------------------------------------------------

def _thumb_name(src: Path, kind: str) -> str | None:
    """`<hash of path, size, mtime>-<kind>.jpg`, or None if `src` is not a readable file."""
    try:
        st = os.stat(src)
    except OSError:
        return None
    key = f"{kind}\0{os.path.abspath(src)}\0{st.st_size}\0{st.st_mtime_ns}\0{THUMB_SIZE}"
    return f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}-{kind}.jpg"


def _make_thumbnails(thumbs: Path, cards: list[_Card]) -> set[str]:
    """Create missing thumbnails, delete unused ones; return the names that exist now."""
    wanted: dict[str, Path] = {}
    for card in cards:
        if card.source is not None:
            card.source_thumb = _thumb_name(card.source, "in")
            if card.source_thumb:
                wanted[card.source_thumb] = card.source
        if card.output is not None:
            card.output_thumb = _thumb_name(card.output, "out")
            if card.output_thumb:
                wanted[card.output_thumb] = card.output
    try:
        thumbs.mkdir(parents=True, exist_ok=True)
        existing = {entry.name for entry in os.scandir(thumbs) if entry.is_file()}
    except OSError as exc:
        raise OutputError(f"cannot write thumbnails in {thumbs}: {exc.strerror or exc}") from None
    todo = [(name, src) for name, src in wanted.items() if name not in existing]
    made = existing & wanted.keys()
    if todo:
        # Pillow releases the GIL while decoding and resizing, so threads use every core.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
            done = pool.map(lambda job: thumbnail(job[1], thumbs / job[0]), todo)
            made |= {name for (name, _), ok in zip(todo, done) if ok}
    for name in existing - wanted.keys():
        if _THUMB_NAME.fullmatch(name):
            with contextlib.suppress(OSError):  # a stale thumbnail left behind costs only disk space
                (thumbs / name).unlink()
    return made


# -- the page ------------------------------------------------------------------------------------

def _page(cfg: RunConfig, cards: list[_Card], made: set[str], counts: Counter, credits: int,
          summary: dict) -> str:
    total = sum(counts.values())
    title = f"Batch report · {cfg.config_path.name}"
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    stats: list[tuple[str, str, int | str]] = [
        ("done", "Done", counts["done"]), ("failed", "Failed", counts["failed"]),
        ("pending", "Pending", counts["pending"]), ("", "Credits spent", credits)]
    if summary.get("elapsed_s") is not None:
        stats.append(("", "Elapsed", _duration(float(summary["elapsed_s"]))))
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # Prompts and errors are user data: even if escaping ever slipped, no script may run.
        '<meta http-equiv="Content-Security-Policy" content="script-src \'none\'; object-src \'none\'; '
        'base-uri \'none\'; form-action \'none\'">\n',
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header class=\"top\">\n",
        f'<div class="head"><h1>Batch report</h1><p class="muted"><span class="mono">'
        f'{escape(cfg.config_path.name)}</span> · {total:,} item{"" if total == 1 else "s"} · generated '
        f'{escape(generated)}</p></div>\n<div class="stats">',
    ]
    for kind, label, value in stats:
        link = f' href="#{kind}"' if kind and counts[kind] else ""
        tag = "a" if link else "div"
        shown = f"{value:,}" if isinstance(value, int) else value
        parts.append(f'<{tag} class="stat {kind}"{link}><span class="value">{escape(shown)}</span>'
                     f'<span class="label">{label}</span></{tag}>')
    parts.append('</div>\n<div class="bar" aria-hidden="true">')
    for kind in ("done", "failed", "pending"):
        if counts[kind]:
            parts.append(f'<span class="{kind}" style="flex-grow:{counts[kind]}"></span>')
    parts.append("</div>\n</header>\n<main>\n")
    for status in ORDER:
        group = [c for c in cards if c.status == status]
        if not group:
            continue
        parts.append(f'<section id="{status}"><h2>{TITLES[status]} <span class="count">{len(group)}'
                     f'</span></h2>\n<div class="grid">\n')
        parts.extend(_card(card, made) for card in group)
        parts.append("</div>\n</section>\n")
    if not cards:
        parts.append('<p class="muted empty">The manifest has no items.</p>\n')
    links = [name for name in ("results.csv", "results.parquet") if (cfg.output.dir / name).is_file()]
    footer = " · ".join(f'<a href="{name}">{name}</a>' for name in links)
    parts.append(f'</main>\n<footer class="muted">{footer}</footer>\n</body>\n</html>\n')
    return "".join(parts)


def _card(card: _Card, made: set[str]) -> str:
    status = card.status
    if card.source_thumb in made:
        source = _frame(_img(card.source_thumb, "input"))
    else:
        source = _frame(_placeholder("Unreadable image" if card.source_thumb else card.source_missing))
    if card.output_thumb in made:
        output = (f'<a class="frame" href="{card.output_href}" title="Open the full-size output">'
                  f'{_img(card.output_thumb, "output")}</a>')
    elif card.output_thumb:
        output = f'<a class="frame" href="{card.output_href}">{_placeholder("Preview unavailable")}</a>'
    else:
        output = _frame(_placeholder({"done": "Output file missing", "failed": "No output",
                                      "pending": "Not generated yet"}[status]))
    meta = []
    if card.order_id:
        meta.append(f'<div><dt>Order</dt><dd class="mono">{escape(card.order_id)}</dd></div>')
    meta.append(f"<div><dt>Credits</dt><dd>{int(card.credits or 0)}</dd></div>")
    if card.attempts:
        meta.append(f"<div><dt>Attempts</dt><dd>{card.attempts}</dd></div>")
    item_id = escape(card.id)
    # A pending item's message is a note (it will be retried), not a failure.
    kind = "error" if status == "failed" else "note"
    error = f'<p class="{kind}">{escape(card.error)}</p>' if card.error else ""
    prompt = f'<p class="prompt">{escape(card.prompt)}</p>' if card.prompt else ""
    return (f'<article class="card {status}"><header><h3 class="mono" title="{item_id}">{item_id}</h3>'
            f'<span class="badge {status}">{status}</span></header>'
            f'<div class="pair"><figure>{source}<figcaption>Input</figcaption></figure>'
            f'<figure>{output}<figcaption>Output</figcaption></figure></div>'
            f'{prompt}{error}<dl class="meta">{"".join(meta)}</dl></article>\n')


def _img(name: str, alt: str) -> str:
    return (f'<img src="{THUMBS}/{name}" alt="{alt}" loading="lazy" decoding="async" '
            f'width="{THUMB_SIZE}" height="{THUMB_SIZE}">')


def _frame(inner: str) -> str:
    return f'<div class="frame">{inner}</div>'


def _placeholder(text: str) -> str:
    return f'<span class="placeholder">{escape(text)}</span>'


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
footer{padding:0 32px 32px;font-size:12px}
.empty{padding:32px 0}
@media (max-width:600px){.top{padding:16px 16px 0}.bar{margin:0 -16px}main{padding:4px 16px 16px}
footer{padding:0 16px 16px}.stat{min-width:0;flex:1 1 40%}}
""".replace("\n", "")
