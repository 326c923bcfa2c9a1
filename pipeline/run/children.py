"""Worker processes a run starts (the fidelity score's, the renditions'): Ctrl-C is the run's to handle,
and their CPU is counted apart from the run's own.

    with ctrl_c_ignored():      # around the call that starts a worker (a pool's first submit)
        pool.submit(...)
    become_worker(run_pid)      # in a worker (its pool's initializer): Ctrl-C left to the run, ends with it
    cpu_seconds()               # {"process": s, "workers": s}, for `run --json`

Ctrl-C reaches the whole process group. A worker that took it would print its traceback on the user's
terminal, and a spawned one imports for a while before its initializer can ignore it. A process started
while SIGINT is ignored inherits that through fork and exec, so it ignores Ctrl-C from its first
instruction; the run ends its workers itself.

A run killed with -9 (by hand, or by the OOM killer) ends nothing. A pool's worker waits for its next
job on a pipe whose writing end it holds itself (multiprocessing gives a child both ends of its queue),
so it would wait forever: about 95 MB each for a fidelity worker, a few more on every killed cron run.
`end_with` gives each worker a thread that ends it once the run is gone.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
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


PARENT_CHECK_S = 0.5  # how often a worker looks whether its run is still there


def become_worker(run_pid: int | None) -> None:
    """A pool's initializer starts with this: Ctrl-C is the run's to handle (a forked worker would
    inherit the run's handler), and the worker ends when its run does (`end_with`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with(run_pid)


def end_with(parent: int | None) -> None:
    """In a worker process: end it (at once, as a killed run would have) within PARENT_CHECK_S of its
    run `parent` ending, whoever ends the run. A portable check of the parent's pid (a dead parent's
    children are given to init, or to a subreaper), not Linux's PR_SET_PDEATHSIG, which follows the
    thread that started the worker rather than the run. The run's pid comes from the run itself (the
    pool's initargs): a worker that asked its own parent after the run died would watch init."""
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-run", daemon=True).start()


def cpu_seconds() -> dict[str, float] | None:
    """CPU seconds (user + system) of this process so far, and of the worker processes it has ended
    (fidelity scores, renditions), for monitoring; None where there is no getrusage (Windows)."""
    if resource is None:
        return None
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"process": round(own.ru_utime + own.ru_stime, 3), "workers": round(ended.ru_utime + ended.ru_stime, 3)}
