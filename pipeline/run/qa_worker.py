"""What a fidelity worker process runs (run/qa.py's pool): light to import, so that a spawned worker
loads the score's libraries (numpy, OpenCV, scikit-image's two metrics) and nothing of the run's.

    start()                                                       # the pool's initializer, once per worker
    fields, cpu_s = score("src.jpg", "out.jpg", 0.7, "review/ab.png")
"""
from __future__ import annotations

import time
from pathlib import Path


def start() -> None:
    """In a new worker: import the score's libraries now, and keep OpenCV on one thread (the pool is
    the parallelism; its own threads would only contend for the same cores)."""
    import cv2

    cv2.setNumThreads(1)
    from pipeline.media import fidelity  # noqa: F401 - the import is the point


def score(source: str, output: str | bytes, min_fidelity: float, heatmap_path: str | None) -> tuple[dict, float]:
    """The checkpoint's fields for one output, and the CPU seconds the score took (qa.py decides from
    them when a second worker pays). A held output's heat-map is written to `heatmap_path` (PNG). A
    picture that cannot be read is a note, not a crash of the pool."""
    from PIL import Image

    from pipeline.media.fidelity import Score, measure
    from pipeline.store.atomic import write_atomically

    began = time.process_time()
    try:
        with open(source, "rb") as fh:
            src = fh.read()
        if isinstance(output, str):
            with open(output, "rb") as fh:
                output = fh.read()
        result = measure(src, output, heatmap=heatmap_path is not None)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        result = Score(None, note=f"fidelity not measured: {type(exc).__name__}: {exc}")
    held = result.fidelity is not None and result.fidelity < min_fidelity
    if held and heatmap_path is not None and result.heatmap:
        write_atomically(Path(heatmap_path), result.heatmap)
    return result.as_row(), time.process_time() - began
