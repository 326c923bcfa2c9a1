"""Every remote (http/https) picture of a catalog fetched before planning: many at once, each try
timed out, retried within `retries`, and a host that stops answering given up as a whole.

    got = await fetch_pictures(cfg, urls)      # {url: sha256 of its bytes, or the FetchError why not}

- One try is `plan.fetch.fetch_once`: connect, answer, stall and total timeouts (`images.remote_*`).
- A fault a later try could fix (refused, reset, no answer, stalled, 5xx, 429) is tried again after
  `store.retry.Backoff`'s waits: the same full jitter, `retries.transient` attempts and
  `retries.budget_s` as every store call. Refusals (404, 403, not an image) are not.
- A copy cached by an earlier run (`remote-cache/`, revalidated by ETag) is used at once instead of
  waiting for a host in trouble; once a try at a host has failed, its other pictures that have a copy
  use it without a try, until a try at that host succeeds. A rerun of a done catalog while its CDN
  is down waits for the tries in flight only.
- A host is given up when one picture's tries have failed for its whole budget and no picture of that
  host was fetched meanwhile (or at once when its name does not exist): its pictures not yet fetched
  fail at once with the same reason. A CDN that is down costs one retry budget, not one per picture.
- Fetched bytes are kept in `<state>/sources/<sha256>`, where the upload stage reads them.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from pipeline.inputs.settings import RunConfig
from pipeline.plan.fetch import CacheEntry, Cached, FetchError, Timeouts, fetch_once, keep
from pipeline.plan.resolver import daemon_resolver
from pipeline.store.atomic import write_atomically
from pipeline.store.retry import Backoff

log = logging.getLogger(__name__)

FETCHES_AT_ONCE = 16  # tries in flight at once, at most (and limits.concurrency)


@dataclass
class _Host:
    """What the fetches of one host know of it."""

    name: str
    todo: deque[str]
    last_ok: float = float("-inf")  # monotonic time of its last answer (a picture, or a refusal)
    down: str | None = None         # why it was given up
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # set when given up: ends the waits
    trouble: str | None = None      # its last try's fault, until a try of it succeeds
    warned: bool = False
    copies: int = 0                 # cached copies used for its pictures, untried or after a fault

    def answered(self) -> None:
        self.last_ok, self.trouble = time.monotonic(), None

    def give_up(self, fault: str, spent: str = "") -> None:
        """No more tries at this host this run: its pictures not fetched yet fail with `fault`."""
        if self.down is None:
            self.down = f"{fault}: host given up{spent}, not tried"
            self.gone.set()
            log.warning("pictures: gave up on %s%s (%s); its %d other pictures not fetched yet fail this run "
                        "too: nothing is bought for them, and the next run tries them again", self.name, spent,
                        fault, len(self.todo))


@dataclass
class _Fetching:
    session: aiohttp.ClientSession
    gate: asyncio.Semaphore
    backoff: Backoff
    timeouts: Timeouts
    max_bytes: int
    source_dir: Path
    cache_dir: Path
    got: dict[str, str | FetchError] = field(default_factory=dict)


async def fetch_pictures(cfg: RunConfig, urls: set[str]) -> dict[str, str | FetchError]:
    """Each URL fetched once and kept under its sha256: {url: sha256, or the FetchError saying why not}."""
    source_dir = cfg.state_dir / "sources"
    source_dir.mkdir(parents=True, exist_ok=True)
    hosts: dict[str, _Host] = {}
    for url in sorted(urls):
        name = _host_of(url)
        hosts.setdefault(name, _Host(name, deque())).todo.append(url)
    at_once = max(1, min(FETCHES_AT_ONCE, cfg.limits.concurrency))
    per_host = at_once if len(hosts) == 1 else max(2, at_once // 2)  # a host in trouble leaves room for others
    images = cfg.images
    connector = aiohttp.TCPConnector(limit=at_once * 2, resolver=daemon_resolver(), ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        ctx = _Fetching(session, asyncio.Semaphore(at_once), Backoff.of(cfg.retries),
                        Timeouts(images.remote_timeout_s, images.remote_connect_timeout_s,
                                 images.remote_stall_timeout_s),
                        images.remote_max_bytes, source_dir, cfg.state_dir / "remote-cache")
        workers = [asyncio.create_task(_worker(ctx, host)) for host in hosts.values()
                   for _ in range(min(per_host, len(host.todo)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # Ctrl-C (the run's task cancelled), or a source we cannot write: stop all
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    _summarise(ctx.got, sum(host.copies for host in hosts.values()))
    return ctx.got


async def _worker(ctx: _Fetching, host: _Host) -> None:
    while host.todo:
        url = host.todo.popleft()
        ctx.got[url] = await _picture(ctx, host, url)


async def _picture(ctx: _Fetching, host: _Host, url: str) -> str | FetchError:
    """One picture: tried, retried while a try could still succeed, else the reason."""
    started, tried = time.monotonic(), 0  # before any await: a picture begun earlier has the earlier start
    cache = CacheEntry(ctx.cache_dir, url)
    cached = await asyncio.to_thread(cache.read)  # tens of MB, maybe: off the loop
    while True:
        if cached is not None and (host.down or host.trouble):  # no wait for a host in trouble
            return await _copy(ctx, host, cached, host.down or host.trouble)
        if host.down is not None:
            return FetchError(host.down)
        tried += 1
        try:
            async with ctx.gate:
                fetched = await fetch_once(ctx.session, url, cached, ctx.timeouts, max_bytes=ctx.max_bytes)
        except FetchError as exc:
            if exc.host_down:
                host.give_up(str(exc))
            elif not exc.transient:
                host.answered()  # it answered, and refused this one: the host itself is fine
                return exc
            host.trouble = str(exc)
            if cached is not None:
                return await _copy(ctx, host, cached, str(exc))
            if exc.host_down:
                return exc
            failed_at = time.monotonic()
            if not host.warned:
                host.warned = True
                log.warning("pictures: %s: %s; trying again for up to %g s (retries.budget_s)", host.name, exc,
                            ctx.backoff.budget_s)
            wait = ctx.backoff.next_wait(tried, started, exc.retry_after)
            if wait is None:
                spent = f" after {tried} tries in {failed_at - started:.0f} s"
                if host.last_ok < started:  # nothing of this host came through all the while
                    host.give_up(str(exc), spent)
                return FetchError(f"{exc}: gave up{spent}")
            try:  # ends early when another picture's tries give the host up
                await asyncio.wait_for(host.gone.wait(), wait)
            except TimeoutError:
                pass
            continue
        host.answered()
        await keep(cache, cached, fetched)
        return await _kept(ctx.source_dir, fetched.data)


async def _copy(ctx: _Fetching, host: _Host, cached: Cached, why: str) -> str:
    """The copy an earlier run fetched (and revalidated then), for a picture whose host is in trouble."""
    host.copies += 1
    if host.copies == 1:
        log.warning("pictures: %s: %s; its pictures fetched by earlier runs are read from their cached copies "
                    "while it is in trouble", host.name, why)
    return await _kept(ctx.source_dir, cached.data)


async def _kept(source_dir: Path, data: bytes) -> str:
    """The picture's sha256, its bytes in source_dir under it (the upload reads them there)."""
    sha = hashlib.sha256(data).hexdigest()
    target = source_dir / sha
    if not target.exists():
        await asyncio.to_thread(write_atomically, target, data)
    return sha


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower().rpartition("@")[2] or "(no host)"
    except ValueError:
        return "(invalid URL)"


def _summarise(got: dict[str, str | FetchError], copies: int) -> None:
    if copies:
        log.warning("pictures: %d of %d read from the copies earlier runs fetched, their hosts being in trouble",
                    copies, len(got))
    failed = Counter(_host_of(url) for url, value in got.items() if isinstance(value, FetchError))
    if failed:
        log.warning("pictures: %d of %d could not be fetched (%s); their items are not bought this run",
                    sum(failed.values()), len(got), ", ".join(f"{host}: {n}" for host, n in failed.most_common(5)))
