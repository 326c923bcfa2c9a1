"""The event loop a run drives on: uvloop's where it is installed, asyncio's own otherwise.

    executed = loop.run(execute(prepared))

uvloop (libuv under asyncio's API) costs a run less client CPU: each HTTP exchange about 0.035 ms
(15 %) less, a 1,000-item run with its API calls stubbed 0.1-0.4 ms per item less (docs/performance.md;
in a whole run against the sandbox the gain is inside this VM's noise). It is a dependency on
Linux and macOS; Windows, or `PIPELINE_EVENT_LOOP=asyncio` (to compare, or to rule it out when
something goes wrong), runs on asyncio's loop. Only the run's own loop changes: the global event
loop policy of a program calling the library is left alone.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Coroutine, TypeVar

T = TypeVar("T")
ENV = "PIPELINE_EVENT_LOOP"  # "asyncio": asyncio's own loop even where uvloop is installed


def factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on the loop `factory` gives."""
    with asyncio.Runner(loop_factory=factory()) as runner:
        return runner.run(coro)
