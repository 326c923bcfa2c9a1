"""What a fidelity worker process runs (run/qa.py's pool): light to import, so that a spawned worker
loads the score's libraries (numpy, OpenCV, scikit-image's two metrics) and nothing of the run's.

    start(run_pid)                                                # the pool's initializer, once per worker
    fields, cpu_s = score("src.jpg", "out.jpg", 0.7, "review/ab.png")
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path


def start(run_pid: int | None = None) -> None:
    """In a new worker: import the score's libraries and score one drawn picture now (their first
    call loads more of them), and keep OpenCV on one thread (the pool is the parallelism; its own
    threads would only contend for the same cores). The reports that follow are of steady work.
    Ctrl-C reaches the whole process group; a worker leaves it to the run, which ends its workers
    (run/qa.py), so the terminal shows the run's one line, not a worker's traceback. A run killed
    with -9 ends nothing: the worker ends itself once `run_pid` is gone (run/children.become_worker)."""
    import io

    from pipeline.run.children import become_worker

    become_worker(run_pid)

    import cv2
    from PIL import Image, ImageDraw

    with _lean_numpy_namespace():
        from pipeline.media.fidelity import measure

    cv2.setNumThreads(1)
    picture = Image.new("RGB", (64, 64), (250, 250, 250))
    ImageDraw.Draw(picture).ellipse([16, 12, 48, 56], fill=(200, 40, 50))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    measure(buffer.getvalue(), buffer.getvalue(), heatmap=True)


# NumPy's submodules loaded on first use, which its `__all__` and `dir()` name all the same.
LAZY_SUBMODULES = frozenset({"f2py", "testing", "ma", "polynomial", "ctypeslib", "char", "rec", "strings"})


@contextlib.contextmanager
def _lean_numpy_namespace() -> Iterator[None]:
    """While scikit-image and SciPy import, NumPy's `__all__` and `dir()` leave out the submodules it
    loads lazily. SciPy's vendored array-api-compat clones NumPy's namespace (`from numpy import *`,
    then every name `dir(numpy)` gives), which imports each of them: f2py, testing, polynomial... They
    cost 0.17 s of CPU at every worker's start (0.85 -> 0.68 s), and the score uses none of them.
    A NumPy without these attributes is left as it is."""
    import numpy

    names, listing = getattr(numpy, "__all__", None), numpy.__dict__.get("__dir__")
    if not isinstance(names, list) or not callable(listing):
        yield
        return
    numpy.__all__ = [name for name in names if name not in LAZY_SUBMODULES]
    numpy.__dir__ = lambda: [name for name in listing() if name not in LAZY_SUBMODULES]
    try:
        yield
    finally:
        numpy.__all__, numpy.__dir__ = names, listing


def score_all(jobs: list[tuple[str, str | bytes, str | None]],
              min_fidelity: float) -> list[tuple[dict, float] | RuntimeError]:
    """`score` for each (source, output, heat-map path): the outputs that arrived while the worker was
    busy go in one message, not one each. Each job is its item's: a bug scoring one is returned in its
    place (the run delivers that output unscored, with the bug's words), not the others sent with it."""
    answers: list[tuple[dict, float] | RuntimeError] = []
    for source, output, heatmap in jobs:
        try:
            answers.append(score(source, output, min_fidelity, heatmap))
        except Exception as exc:  # noqa: BLE001 - the per-item boundary, in the worker
            answers.append(RuntimeError(f"the score failed: {type(exc).__name__}: {exc}"))
    return answers


def score(source: str, output: str | bytes, min_fidelity: float, heatmap_path: str | None) -> tuple[dict, float]:
    """The checkpoint's fields for one output, and the CPU seconds the score took (qa.py decides from
    them when a second worker pays). A held output's heat-map is written to `heatmap_path` (PNG). A
    picture that cannot be read is a note, not a crash of the pool."""
    from PIL import Image

    from pipeline.media.fidelity import Score, measure
    from pipeline.store.atomic import read_file, write_atomically

    began = time.process_time()
    try:
        src = read_file(source)
        if isinstance(output, str):
            output = read_file(output)
        result = measure(src, output, heatmap_below=min_fidelity if heatmap_path is not None else None)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        result = Score(None, note=f"fidelity not measured: {type(exc).__name__}: {exc}")
    held = result.fidelity is not None and result.fidelity < min_fidelity
    if held and heatmap_path is not None and result.heatmap:
        write_atomically(Path(heatmap_path), result.heatmap)
    return result.as_row(), time.process_time() - began

