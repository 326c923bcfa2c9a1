"""SandboxThread: the sandbox on its own event loop in a background thread, for sync and subprocess tests.

    with SandboxThread(SandboxOptions(processing_s=0.05)) as sb:
        run_the_client(sb.base_url, key=SANDBOX_KEY)
        assert sb.ledger_snapshot()["credits"] == 1
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.server import RunningSandbox, start_sandbox

T = TypeVar("T")


class SandboxThread:
    """Context manager running one sandbox; every ledger access goes through its loop."""

    def __init__(self, options: SandboxOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0, start_timeout_s: float = 10.0, *,
                 clock: Callable[[], float] | None = None):
        self._options = options or SandboxOptions()
        self._clock = clock  # the sandbox's base clock, called on its thread (default: time.time)
        self._host, self._port = host, port
        self._timeout = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sandbox: RunningSandbox | None = None

    def start(self) -> SandboxThread:
        if self._thread is not None:
            raise RuntimeError("SandboxThread is already started")
        ready: Future[RunningSandbox] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="sandbox", daemon=True)
        self._thread.start()
        self._sandbox = ready.result(timeout=self._timeout)
        return self

    def _run(self, ready: Future) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            sandbox = loop.run_until_complete(start_sandbox(self._options, self._host, self._port,
                                                             clock=self._clock))
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(sandbox)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(sandbox.close())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the sandbox's loop and return its result (thread-safe)."""
        async def wrapper() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout=10)

    @property
    def sandbox(self) -> RunningSandbox:
        if self._sandbox is None:
            raise RuntimeError("SandboxThread is not started")
        return self._sandbox

    @property
    def base_url(self) -> str:
        return self.sandbox.base_url

    @property
    def root_url(self) -> str:
        return self.sandbox.root_url

    @property
    def port(self) -> int:
        return self.sandbox.port

    @property
    def options(self) -> SandboxOptions:
        return self.call(lambda: self.sandbox.options)

    def ledger_snapshot(self) -> dict[str, Any]:
        return self.call(self.sandbox.ledger.to_dict)

    def set_options(self, **changes) -> SandboxOptions:
        return self.call(lambda: self.sandbox.set_options(**changes))

    def reset_ledger(self) -> None:
        self.call(self.sandbox.ledger.reset)

    def age_uploads(self, seconds: float) -> int:
        return self.call(lambda: self.sandbox.state.age_uploads(seconds))
