"""Running the sandbox: on the current event loop (start_sandbox) or as a blocking command (serve)."""
from __future__ import annotations

import asyncio
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from pipeline.sandbox.app import ROOT, create_app, state_of
from pipeline.sandbox.ledger import Ledger
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.state import SandboxState


@dataclass
class RunningSandbox:
    """A sandbox listening on ``host:port``; ``base_url`` is what a client is pointed at."""

    app: web.Application
    runner: web.AppRunner
    host: str
    port: int

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}{ROOT}"

    @property
    def state(self) -> SandboxState:
        return state_of(self.app)

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    @property
    def options(self) -> SandboxOptions:
        return self.state.options

    def set_options(self, **changes) -> SandboxOptions:
        return self.state.set_options(**changes)

    async def close(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def start_sandbox(options: SandboxOptions | None = None, host: str = "127.0.0.1",
                        port: int = 0, *, clock: Callable[[], float] | None = None,
                        sock: socket.socket | None = None) -> RunningSandbox:
    """Start the sandbox on the running loop; port 0 picks a free port, reported in ``.port``.

    ``clock`` replaces ``time.time`` as the sandbox's base clock, e.g. a scaled or virtual one.
    ``sock``: a socket already bound (host and port are then its own), so that the caller knows the
    sandbox's URL before any event loop runs.
    """
    app = create_app(options, clock=clock)
    # a short grace period: tests stop sandboxes with slow requests still in flight
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    if sock is not None:
        host = sock.getsockname()[0]
    site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    real_port = runner.addresses[0][1]
    return RunningSandbox(app=app, runner=runner, host=host, port=real_port)


def serve(host: str, port: int, options: SandboxOptions) -> None:
    """Run the sandbox until Ctrl-C or SIGTERM, announcing its URL on stdout once it listens."""
    asyncio.run(_serve(host, port, options))


async def _serve(host: str, port: int, options: SandboxOptions) -> None:
    sandbox = await start_sandbox(options, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    print(f"sandbox listening on {sandbox.base_url} (key: {options.api_key})", flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.close()
        print("sandbox stopped", file=sys.stderr, flush=True)
