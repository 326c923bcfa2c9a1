"""Name lookups for fetching pictures, each in a daemon thread of its own, so one that hangs holds nothing.

    connector = aiohttp.TCPConnector(resolver=daemon_resolver())

aiohttp's default resolver runs getaddrinfo in the event loop's default executor. With the network
cut off, a lookup can hang far longer than any timeout we set: the timeout abandons the wait, but the
worker thread stays stuck, the executor's few threads fill up (our file reads queue behind them), and
`asyncio.run` then waits for them at its end, Ctrl-C included. A daemon thread per lookup is left
behind instead; lookups of one name in flight at once share one thread.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Callable

from aiohttp.resolver import ThreadedResolver


class _DaemonLookups:
    """The two loop methods aiohttp's ThreadedResolver calls, run in daemon threads."""

    def __init__(self) -> None:
        self._pending: dict[tuple, asyncio.Future] = {}

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> list:
        return await self._shared(socket.getaddrinfo, args, kwargs)

    async def getnameinfo(self, *args: Any) -> tuple[str, str]:
        return await self._shared(socket.getnameinfo, args, {})

    async def _shared(self, call: Callable, args: tuple, kwargs: dict) -> Any:
        key = (call.__name__, args, tuple(sorted(kwargs.items())))
        future = self._pending.get(key)
        if future is None:
            future = self._pending[key] = _in_daemon_thread(call, *args, **kwargs)
            future.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(future)  # one waiter's timeout must not cancel the others' lookup


def _in_daemon_thread(call: Callable, *args: Any, **kwargs: Any) -> asyncio.Future:
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def work() -> None:
        try:
            outcome = (True, call(*args, **kwargs))
        except (OSError, ValueError) as exc:  # gaierror, or a name IDNA cannot encode: the caller words it
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop has closed: nobody waits for this name any more

    threading.Thread(target=work, name="name-lookup", daemon=True).start()
    return future


def daemon_resolver() -> ThreadedResolver:
    """aiohttp's threaded resolver (its answers, as it shapes them) over daemon-thread lookups."""
    return ThreadedResolver(loop=_DaemonLookups())  # type: ignore[arg-type]  # duck-typed: two methods
