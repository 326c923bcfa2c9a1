"""pyarrow for the results' Parquet twin, imported once, and without NumPy in `pipeline`'s own process.

    arrow.without_numpy()   # the command's process only (cli.entry): it never gives pyarrow NumPy data
    arrow.load()            # pyarrow, pyarrow.csv and pyarrow.parquet, from any thread
    np = arrow.numpy()      # NumPy, never while load() hides it

pyarrow treats NumPy as optional (pyarrow/lib.pyx imports it in a try since pyarrow 16), and the twin
is CSV read back and written as Parquet: no NumPy in it. NumPy is two thirds of pyarrow's import:
0.21 s of CPU with it, 0.07 s without, or 0.14 ms per item of a 1,000-item run (#21 §5).

A library caller's process keeps the normal import: there pyarrow may later meet NumPy arrays or
pandas (`to_pandas`), which a pyarrow imported without NumPy refuses for the life of the process.
"""
from __future__ import annotations

import sys
import threading

_lock = threading.Lock()  # held while NumPy is hidden: numpy() waits rather than fail to import it
_hide_numpy = False


def without_numpy() -> None:
    """Import pyarrow without NumPy from now on in this process, where NumPy is not loaded yet."""
    global _hide_numpy
    _hide_numpy = True


def load() -> None:
    """Import pyarrow and its CSV and Parquet modules (once; a second caller waits for the first)."""
    if "pyarrow.parquet" in sys.modules and "pyarrow.csv" in sys.modules:
        return
    with _lock:
        hide = _hide_numpy and "numpy" not in sys.modules and "pyarrow" not in sys.modules
        if hide:
            sys.modules["numpy"] = None  # `import numpy` raises ImportError, as if it were not installed
        try:
            import pyarrow.csv  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        finally:
            if hide and sys.modules.get("numpy", False) is None:
                del sys.modules["numpy"]


def numpy():
    """The numpy module, imported after any load() in progress has stopped hiding it."""
    if "numpy" not in sys.modules or sys.modules["numpy"] is None:
        with _lock:
            import numpy  # noqa: F401
    return sys.modules["numpy"]
