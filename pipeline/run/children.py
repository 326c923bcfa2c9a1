"""Worker processes a run starts (the fidelity score's, the renditions'): Ctrl-C is the run's to handle,
and their CPU is counted apart from the run's own.

    with ctrl_c_ignored():      # around the call that starts a worker (a pool's first submit)
        pool.submit(...)
    cpu_seconds()               # {"process": s, "workers": s}, for `run --json`

Ctrl-C reaches the whole process group. A worker that took it would print its traceback on the user's
terminal, and a spawned one imports for a while before its initializer can ignore it. A process started
while SIGINT is ignored inherits that through fork and exec, so it ignores Ctrl-C from its first
instruction; the run ends its workers itself.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

try:
    import resource
except ImportError:  # Windows
    resource = None


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """SIGINT ignored in this process while the block starts workers; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a library caller's thread keeps its own
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cpu_seconds() -> dict[str, float] | None:
    """CPU seconds (user + system) of this process so far, and of the worker processes it has ended
    (fidelity scores, renditions), for monitoring; None where there is no getrusage (Windows)."""
    if resource is None:
        return None
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"process": round(own.ru_utime + own.ru_stime, 3), "workers": round(ended.ru_utime + ended.ru_stime, 3)}
