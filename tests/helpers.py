"""Helpers shared by the test modules (fixtures live in conftest.py); no test module imports another."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import csv
import functools
import http.server
import io
import os
import selectors
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import yaml
from PIL import Image, ImageDraw

from pipeline.errors import ConfigError
from pipeline.inputs.validate import overview, problem_lines, validate
from pipeline.sandbox import SANDBOX_KEY, SandboxOptions

# Fast sandbox defaults for tests: orders finish in 0.1 s, polls every 0.05 s.
TEST_SANDBOX = SandboxOptions(processing_s=0.1, fast=False, seed=7, retry_after_s=0.05)
COLOURS = ["red", "blue", "green", "orange", "purple", "teal", "navy", "gold", "brown", "pink"]
KEY = {"x-api-key": SANDBOX_KEY}
DEADLINE_S = 60.0  # how long any wait loop may wait for what it waits on before the test fails


# -- pictures -------------------------------------------------------------------------------------

def draw_product(path: Path, colour: str, size: int = 96, shape: int = 0) -> Path:
    """A simple product on a plain white background, saved as JPEG or PNG by suffix."""
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    box = (size // 4, size // 5, size * 3 // 4, size * 4 // 5)
    [draw.rectangle, draw.ellipse][shape % 2](box, fill=colour)
    im.save(path)
    return path


def jpeg_bytes(size=(96, 72), colour=(255, 255, 255), product: bool = True, *, quality: int = 90,
               noise: bool = False) -> bytes:
    """A JPEG: a plain `colour` field (or grey noise), with a red product on it unless `product` is False."""
    img = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, colour)
    if product:
        w, h = size
        ImageDraw.Draw(img).rectangle([w * 0.3, h * 0.25, w * 0.7, h * 0.85], fill=(200, 30, 35))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# -- catalogs on disk, and what a run left there --------------------------------------------------

def write_catalog(root: Path, n: int = 6, *, base_url: str, config: dict | None = None,
                  distinct: bool = True, rows: list[dict] | None = None) -> Path:
    """Write images, catalog.csv and catalog.yaml under `root`; return the config path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    if rows is None:
        rows = []
        for i in range(n):
            k = i if distinct else 0
            name = f"images/p{k}.{'png' if k % 2 else 'jpg'}"
            if not (root / name).exists():
                draw_product(root / name, COLOURS[k % len(COLOURS)], shape=k)
            rows.append({"id": f"sku-{i:03d}", "image": name, "title": f"{COLOURS[k % 10]} product {i}",
                         "scene": "a white marble counter"})
    with open(root / "catalog.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    doc = {
        "manifest": "catalog.csv",
        "prompt": "{title} on {scene}",
        "output": {"dir": "out"},
        "limits": {"concurrency": 8},
        "poll": {"interval_s": 0.05},
        "api": {"base_url": base_url},
        "retries": {"backoff_base_s": 0.01, "backoff_max_s": 0.2},
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            doc.setdefault(section, {}).update(values)
        else:
            doc[section] = values
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def result_rows(config: Path, out: str = "out") -> list[dict]:
    """The rows of results.csv beside the config, in file order."""
    return read_csv(config.parent / out / "results.csv")


def results(config: Path, out: str = "out") -> dict[str, dict]:
    """results.csv beside the config, by item id (one variant per item)."""
    return {r["id"]: r for r in result_rows(config, out)}


def problems_of(config: Path, env: dict[str, str] | None = None) -> list[str]:
    """Every problem `pipeline validate` would print: a ConfigError's lines, else every invalid row's.
    Worked out twice, from the whole manifest and as `pipeline validate` counts it without holding
    its rows (inputs.validate.overview): the two must say the same."""
    given = {} if env is None else {"env": env}
    try:
        _, manifest, plan = validate(config, **given)
    except ConfigError as exc:
        try:
            overview(config, **given)
        except ConfigError as counted:
            assert counted.problems == exc.problems
        else:
            raise AssertionError(f"overview() accepted what validate() refused: {exc.problems}") from None
        return exc.problems
    assert overview(config, **given)[1] == dataclasses.replace(plan, problems=tuple(problem_lines(manifest)))
    return problem_lines(manifest)


def order_ids(config: Path) -> dict[str, str]:
    """Row id -> orderId of every row in the checkpoint that has one ({} before the checkpoint exists)."""
    path = config.parent / "out" / ".pipeline" / "checkpoint.sqlite"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, order_id FROM items WHERE order_id IS NOT NULL"))
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


# -- child processes ------------------------------------------------------------------------------

def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIGHTX_BASE_URL",)}
    env.update({"LIGHTX_API_KEY": SANDBOX_KEY, "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def wait_for(predicate: Callable[[], object], what: str, timeout: float = DEADLINE_S, *,
             child=None) -> object:
    """Wait until `predicate()` is truthy and return its value; fail the test naming `what` after
    `timeout` s, or at once if `child` (a Popen) exits first. This waits on an event, never for a time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if child is not None and child.poll() is not None:
            raise AssertionError(f"the run exited ({child.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.01)


# -- servers the tests start on 127.0.0.1 --------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def static_server(root: Path, handler: type[http.server.SimpleHTTPRequestHandler] = _QuietHandler,
                  ) -> Iterator[str]:
    """Serve the files under `root` over HTTP on a free loopback port; yields the base URL (no slash)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Lx:
    """A tiny LightX client for the sandbox's tests; the real one lives in pipeline/lightx/client.py."""

    def __init__(self, session: aiohttp.ClientSession, sandbox):
        self.s, self.sb, self.base = session, sandbox, sandbox.base_url

    async def api(self, path: str, body, headers=KEY) -> tuple[int, dict]:
        async with self.s.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def slot(self, size: int, content_type="image/jpeg", upload_type="imageUrl"):
        return await self.api("/v2/uploadImageUrl",
                              {"uploadType": upload_type, "size": size, "contentType": content_type})

    async def put(self, url: str, data: bytes, content_type="image/jpeg", headers=None):
        async with self.s.put(url, data=data, headers={"Content-Type": content_type, **(headers or {})}) as r:
            return r.status, await r.text(), r.headers

    async def upload(self, data: bytes, content_type="image/jpeg") -> str:
        status, slot = await self.slot(len(data), content_type)
        assert status == 200 and slot["statusCode"] == 2000, slot
        status, text, _ = await self.put(slot["body"]["uploadImage"], data, content_type)
        assert status == 200, text
        return slot["body"]["imageUrl"]

    async def submit(self, image_url: str, prompt="on a wooden table"):
        return await self.api("/v1/background-generator", {"imageUrl": image_url, "textPrompt": prompt})

    async def order(self, data: bytes, prompt="on a wooden table") -> str:
        status, body = await self.submit(await self.upload(data), prompt)
        assert status == 200 and body["statusCode"] == 2000, body
        return body["body"]["orderId"]

    async def status(self, order_id: str):
        return await self.api("/v1/order-status", {"orderId": order_id})

    async def wait_done(self, order_id: str, timeout=5.0) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            _, body = await self.status(order_id)
            if body["body"]["status"] != "init" or asyncio.get_running_loop().time() > deadline:
                return body["body"]
            await asyncio.sleep(0.02)

    async def get(self, url: str) -> tuple[int, bytes, str]:
        async with self.s.get(url) as r:
            return r.status, await r.read(), r.content_type


# -- a hand-advanced clock for asyncio ------------------------------------------------------------

class _FastForward:
    """A selector that, when nothing is ready, moves the loop's clock to its next timer instead of
    sleeping. (The idea is aiotools' VirtualClock; written here for our loop.)"""

    def __init__(self, selector: selectors.BaseSelector, loop: VirtualTimeLoop):
        self._selector, self._loop = selector, loop

    def select(self, timeout=None):
        # Loopback sockets between a client and a server on this loop are ready at once; a short real
        # wait lets a worker thread's answer arrive before time is moved on.
        events = self._selector.select(0 if timeout == 0 else 0.001)
        if events:
            return events
        if timeout is None:
            return self._selector.select(None)
        # At least a microsecond (a float at 1.7e9 s holds no less), as real time would pass: a timer
        # that finds it is due a hair later (aiolimiter's) must not see the same instant forever.
        self._loop.now += max(timeout, 1e-6)
        return []

    def __getattr__(self, name):
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when every task waits on a timer: it jumps to the next
    one. Timings in a test on it are exact and do not depend on the machine's load."""

    def __init__(self, start: float | None = None):
        super().__init__()
        self.now = time.time() if start is None else start  # epoch seconds: timestamps in rows stay plausible
        self._clock_resolution = 1e-6  # above a float's step at 1.7e9 s, so a timer due now runs now
        self._selector = _FastForward(self._selector, self)

    def time(self) -> float:
        return self.now


def run_on_virtual_time(coro):
    """asyncio.run(coro) on a VirtualTimeLoop; `asyncio.get_running_loop().time()` is the clock."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every JPEG segment from SOI to SOS; SOS's payload is the rest of the file."""
    assert data[:2] == b"\xff\xd8"
    pos, found = 2, []
    while True:
        marker = data[pos + 1]
        if marker == 0xDA:
            found.append((marker, data[pos:]))
            return found
        (length,) = struct.unpack_from(">H", data, pos + 2)
        found.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length


def received_sha256(path: Path) -> str:
    """The sha256 of a delivered picture as the service sent it: without the disclosure XMP we add."""
    from pipeline.media.xmp import disclose
    return hashlib.sha256(disclose(path.read_bytes(), None)).hexdigest()


# -- a big results table ---------------------------------------------------------------------------

def results_sample(root: Path, n: int, awkward: str):
    """(cfg, manifest, rows) of `n` items in every state, not in id order, with three invalid rows:
    every 50th prompt is `awkward`, every 97th id is not ASCII. Deterministic, so its table is pinned."""
    from pipeline.inputs.config import load_config
    from pipeline.inputs.manifest import InvalidItem, Item, Manifest
    from pipeline.store.checkpoint import Row

    (root / "catalog.csv").write_text("id,image,title\n", encoding="utf-8")
    (root / "config.yaml").write_text("manifest: catalog.csv\nprompt: '{title}'\n", encoding="utf-8")
    cfg = load_config(root / "config.yaml")
    items, rows = [], {}
    for k in ((j * 7919) % n for j in range(n)):
        item_id = f"ünï-{k:06d}" if k % 97 == 0 else f"sku-{k:06d}"
        prompt = awkward if k % 50 == 0 else f"product {k % 300} on a marble counter"
        items.append(Item(id=item_id, image=f"images/p{k % 300:03d}.jpg", prompt=prompt, row=k + 2,
                          output_name=f"{item_id}.jpg", extra={"title": prompt, "note": "" if k % 3 else "NA"}))
        kind, at = k % 10, 1_700_000_000.0 + k
        if kind == 9:
            continue  # never planned: no row
        row = Row(id=item_id, fingerprint=f"{k:064x}", image_sha256=f"{k % 300:064x}", attempts=1 + k % 2,
                  credits=1, submitted_at=at, order_id=f"{k:032x}", output_url=f"http://x/o/{k}.jpg")
        if kind <= 5 or kind == 8:
            row.state, row.output_path, row.output_sha256, row.finished_at = (
                "done" if kind <= 5 else "review", f"{item_id}.jpg", f"{k * 31:064x}", at + 12.25 + k % 7)
            if kind == 8:
                row.fidelity, row.fidelity_ssim, row.fidelity_note = 0.5 + (k % 40) / 100, 0.9, None
        elif kind == 6:
            row.state, row.error, row.credits = "failed", f"order failed: {awkward if k % 20 == 6 else 'no'}", 0
        else:
            row.state, row.error = "submitted", "status check timed out; resumed next run"
        rows[item_id] = row
    invalid = [InvalidItem(id=f"bad-{j}", row=n + 2 + j, problems=["no image", "id too long"][: 1 + j % 2])
               for j in range(3)]
    return cfg, Manifest(items=items, invalid=invalid, columns=["id", "image", "title", "note"]), rows


def die_at_start(*_run_pid) -> None:
    """A process pool's initializer that kills its worker: a fidelity worker that cannot start (run/qa.py)."""
    import os

    os._exit(3)


def score_all_with_a_bug(jobs, min_fidelity):
    """qa_worker.score_all in a worker, but a bug's answer for a source named p1.*: a per-item failure."""
    from pipeline.run import qa_worker

    answers = qa_worker.score_all(jobs, min_fidelity)
    return [RuntimeError("the score failed: ZeroDivisionError: a bug") if Path(job[0]).stem == "p1" else answer
            for job, answer in zip(jobs, answers)]


# -- a store's CDN that misbehaves on demand -------------------------------------------------------

class Cdn:
    """Pictures over HTTP on 127.0.0.1, in a thread of their own, answering as told, path by path.

    `cdn.answers[path]` is a list of answers, one per request, the last repeated (`cdn.default` for
    paths not listed): "ok" (a JPEG drawn from the path), "silent" (the connection accepted, never an
    answer), "stall" (the head and half the body, then nothing), "trickle" (the body a byte every
    0.05 s: never quiet for long, done after a minute), or an HTTP status (503, 404, ...). `cdn.requests` counts
    requests by path; `cdn.url(path)` is a picture's URL."""

    def __init__(self) -> None:
        self.answers: dict[str, list] = {}
        self.default: list = ["ok"]
        self.requests: Counter = Counter()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "Cdn":
        self._thread.start()
        self._ready.wait(DEADLINE_S)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(DEADLINE_S)
        self._thread.join(DEADLINE_S)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def picture(self, path: str) -> bytes:
        digest = hashlib.sha256(path.encode()).digest()
        return jpeg_bytes((64, 48), tuple(digest[:3]))

    def _serve(self) -> None:
        from aiohttp import web
        self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()

        async def answer(request: web.Request) -> web.StreamResponse:
            path = request.path
            queue = self.answers.get(path, self.default)
            what = queue[min(self.requests[path], len(queue) - 1)]
            self.requests[path] += 1
            body = self.picture(path)
            if isinstance(what, int):
                return web.Response(status=what, headers={"Retry-After": "0"} if what == 503 else {})
            if what == "silent":
                await self._released.wait()
            if what == "ok":
                return web.Response(body=body, content_type="image/jpeg")
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
            await response.prepare(request)
            if what == "stall":
                await response.write(body[: len(body) // 2])
                await self._released.wait()
            for at in range(len(body) if what == "trickle" else 0):
                if self._released.is_set():
                    break
                try:
                    await response.write(body[at:at + 1])
                except ConnectionResetError:  # the client gave up on it: the point
                    break
                await asyncio.sleep(0.05)
            return response

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", answer)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            self._ready.set()
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _stop(self) -> None:
        self._released.set()
        await self._runner.cleanup()
        self._loop.call_soon(self._loop.stop)


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection: bound, never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
