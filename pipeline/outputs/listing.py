"""The names in output.dir, read once, for the report's question "is this output there?".

    names = listing.read(out_dir)     # a set of the names, or with a million of them their hashes
    "sku-1.jpg" in listing.among(names, page_outputs)   # a page's names looked up at once

A set of a million names is 90 MB (the strings and the table); their 8-byte hashes, sorted, are 8 MB,
and a lookup is a binary search. Python's str hash is 64 bits, keyed per process: a name not in the
folder matches another's hash about once in 10^13 lookups, and then its card shows the output as
present (a broken preview). A folder of up to BIG entries is held as the names themselves: exact.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from itertools import chain
from pathlib import Path

from pipeline.outputs import arrow

BIG = 100_000  # entries beyond which the names are held as hashes


class Hashed:
    """Membership of a big folder's names by their sorted 64-bit hashes."""

    def __init__(self, names: Iterable[str]):
        np = arrow.numpy()  # imported here: only a big folder needs it
        self._hashes = np.fromiter((hash(name) for name in names), dtype=np.int64)
        self._hashes.sort()

    def __contains__(self, name: object) -> bool:
        return bool(self.among([name]))

    def __len__(self) -> int:
        return len(self._hashes)

    def among(self, names: Collection) -> set:
        """Those of `names` in the folder, looked up together (one binary search each, in C)."""
        np = arrow.numpy()
        if not names:
            return set()
        keys = np.fromiter((hash(name) for name in names), dtype=np.int64, count=len(names))
        at = np.minimum(self._hashes.searchsorted(keys), len(self._hashes) - 1)
        return {name for name, hit in zip(names, (self._hashes[at] == keys).tolist()) if hit}


def among(names: Collection[str], wanted: Collection[str]) -> Collection[str]:
    """Those of `wanted` in `names` (a set as it is: a lookup costs nothing; a Hashed, batched)."""
    return names.among(wanted) if isinstance(names, Hashed) else names


def read(folder: Path) -> set[str] | Hashed:
    """The names of `folder`'s entries, read as a stream (an OSError is the caller's)."""
    names: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            names.add(entry.name)
            if len(names) > BIG:
                return Hashed(chain(names, (entry.name for entry in entries)))  # the rest never held
    return names
