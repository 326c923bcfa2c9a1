"""What one wake-up from idle costs this machine's CPU, by how long the process was idle before it.

    python benchmarks/wakeups.py                 # uvloop timers, then time.sleep, at 0.5-20 ms gaps
    wake_cost_us(6.0)                            # one figure, as bench.py notes it under its table

An event loop that waits between answers goes idle and wakes once per answer (or per timer). On the
2-core development VM that wake-up costs more CPU the longer the idle before it, though it does no
work: caches, TLB and branch predictors are cold once the host has run something else. So the same
requests cost more CPU spread out, as a run's are, than back to back (docs/performance.md, sessions
11 and 12). Each line: the process's user and system CPU per wake-up (getrusage), with no work done.

Not part of the test suite. Needs only the project's own dependencies (uvloop if installed).
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import time


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _timers(count: int, gap_s: float) -> None:
    for _ in range(count):  # one task, one timer a time: each wake-up steps it once
        await asyncio.sleep(gap_s)


def _report(what: str, gap_ms: float, count: int, before: tuple[float, float]) -> None:
    user, system = (after - was for after, was in zip(_cpu(), before))
    print(f"{what:<12} idle {gap_ms:>4g} ms: {user / count * 1e6:6.0f} us user + {system / count * 1e6:4.0f} us "
          f"system per wake-up ({count} wake-ups)")


def _loop():
    """(run, name): uvloop's runner where installed, as the run's loop is (pipeline/run/loop.py)."""
    try:
        import uvloop
        return uvloop.run, "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run, "asyncio"


def wake_cost_us(gap_ms: float = 6.0, seconds: float = 1.0) -> float:
    """CPU microseconds per wake-up of an event loop idle `gap_ms` before each (bench.py's note)."""
    count = max(50, int(seconds * 1000 / gap_ms))
    before = sum(_cpu())
    _loop()[0](_timers(count, gap_ms / 1000))
    return (sum(_cpu()) - before) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each series (default 3)")
    args = parser.parse_args()
    run, loop_name = _loop()
    for gap_ms in (0.5, 2.0, 6.0, 20.0):
        count = max(50, int(args.seconds * 1000 / gap_ms))
        before = _cpu()
        run(_timers(count, gap_ms / 1000))
        _report(loop_name, gap_ms, count, before)
    for gap_ms in (0.5, 2.0, 6.0, 20.0):
        count = max(50, int(args.seconds * 1000 / gap_ms))
        before = _cpu()
        for _ in range(count):
            time.sleep(gap_ms / 1000)
        _report("time.sleep", gap_ms, count, before)


if __name__ == "__main__":
    main()
