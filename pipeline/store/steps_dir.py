"""`<state>/steps/`: the outputs of steps that are not a variant's last, named by their sha256.

    removed, freed = remove_unreferenced(cfg.state_dir, rows.values())   # at the end of a run
    files, size = usage(cfg.state_dir)                                    # what `pipeline status` shows

A file is kept while a checkpoint row names it (``output_path`` ``steps/<sha256>``): the next step
uploads it, and a rerun checks it is intact before it trusts the step. Once no row does (its
variant changed, its item left the manifest), nothing will read it again.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pipeline.store.checkpoint import Row
from pipeline.store.names import STEPS_DIR

_NAME = re.compile(r"[0-9a-f]{64}")  # what the download stage writes; anything else is left alone


def usage(state_dir: Path) -> tuple[int, int]:
    """(files, bytes) in state_dir/steps; (0, 0) when there is none."""
    files = size = 0
    with contextlib.suppress(OSError), os.scandir(state_dir / STEPS_DIR) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    files, size = files + 1, size + entry.stat(follow_symlinks=False).st_size
    return files, size


def remove_unreferenced(state_dir: Path, rows: Iterable[Row]) -> tuple[int, int]:
    """Remove the files of state_dir/steps that no row names; (files, bytes) removed."""
    folder = state_dir / STEPS_DIR
    if not folder.is_dir():
        return 0, 0
    prefix = STEPS_DIR + "/"
    kept = {row.output_path[len(prefix):] for row in rows if row.output_path and row.output_path.startswith(prefix)}
    removed = freed = 0
    # Tidying up never fails a run: a file that cannot be removed now is removed by a later one.
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name in kept or not _NAME.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    os.unlink(entry.path)
                    removed, freed = removed + 1, freed + size
    return removed, freed
