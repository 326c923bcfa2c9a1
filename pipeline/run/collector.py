"""The cyclic garbage collector during a run: the plan's items and rows are kept out of its passes.

    with long_lived():
        asyncio.run(execute(prepared))

A run holds every item, row and module for its whole life, and makes short-lived objects by the
thousand per item (requests, answers, tasks). Python's collector, left as it is, traverses the
long-lived ones again on every older-generation pass: 0.1-0.2 s of CPU in a 1,000-item run,
more with a bigger manifest. `gc.freeze()` moves everything alive before the drive into a permanent
generation (what the documentation of gc.freeze suggests for long-lived state), and a larger first
threshold makes young passes rarer; both are undone afterwards, for callers of the library that run
again in the same process.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

YOUNG_THRESHOLD = 20_000  # allocations between young passes (Python's default: 700)


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """Freeze what is alive now, collect young objects less often; restored on the way out."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
