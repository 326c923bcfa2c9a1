"""Calibrate qa.min_fidelity and measure the score's cost on the sandbox's labelled outputs.

    python benchmarks/fidelity_calibration.py [N]      # N drawn products (default 60), every alteration
    python benchmarks/fidelity_calibration.py --cost   # only the CPU of one score at 64, 512, 1024 px

Each product is rendered as an independent server would (on a new background with a shadow, 1.25x
larger, moved a little, JPEG quality 85), once faithful and once per alteration; the figures in
docs/fidelity.md come from this script.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2

from pipeline.media.fidelity import measure
from pipeline.sandbox import alter, products

PROMPTS = ("a product on a white marble counter", "a product on a wooden table in a kitchen",
           "a product on sand at the beach, sunset", "a product on grey concrete", "a product on green grass")


def main(n: int = 60) -> None:
    cv2.setNumThreads(1)  # as in the run's workers (run/qa_worker.py): CPU figures of one thread
    faithful, altered, cpu = [], {k: [] for k in alter.ALTERATIONS}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            src = products.draw(Path(tmp) / f"p{i}.{'png' if i % 3 == 0 else 'jpg'}", i).read_bytes()
            prompt = PROMPTS[i % len(PROMPTS)]
            for kind in (None, *alter.ALTERATIONS):
                out = alter.render(src, prompt, alteration=kind, scale=1.25,
                                   shift=alter.draw_shift(f"{i}", (640, 640), 0.03), quality=85)
                t = time.process_time()
                score = measure(src, out)
                cpu.append(time.process_time() - t)
                (faithful if kind is None else altered[kind]).append(score.fidelity)
    bad = [f for v in altered.values() for f in v]
    print(f"{n} products: {len(faithful)} faithful, {len(bad)} altered outputs")
    print("faithful fidelity, lowest 5:", sorted(round(f, 3) for f in faithful)[:5])
    for kind, values in altered.items():
        print(f"{kind:>10}: highest 5:", sorted(round(f, 3) for f in values)[-5:])
    for threshold in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8):
        held_bad = sum(f < threshold for f in bad) / len(bad)
        held_good = sum(f < threshold for f in faithful) / len(faithful)
        print(f"min_fidelity {threshold:.2f}: altered held {held_bad:.1%}, faithful held {held_good:.1%}")
    cpu.sort()
    print(f"CPU per 512 px source / 640 px output: median {cpu[len(cpu) // 2] * 1000:.1f} ms, "
          f"p95 {cpu[int(len(cpu) * 0.95)] * 1000:.1f} ms")
    cost_by_size()


def cost_by_size(repeat: int = 40) -> None:
    """CPU of one score by the source's size and format, each against its output 1.25x larger: the
    median of `repeat` scores of each of 6 products (64 px is the bench's size, scored at its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 512, 1024):
            for suffix in ("jpg", "png"):
                times = []
                for i in range(6):
                    src = products.draw(Path(tmp) / f"s{size}-{i}.{suffix}", i, size=size).read_bytes()
                    shift = alter.draw_shift(f"{i}", (round(size * 1.25),) * 2, 0.03)
                    out = alter.render(src, PROMPTS[i % len(PROMPTS)], scale=1.25, shift=shift, quality=85)
                    measure(src, out)
                    for _ in range(repeat // 6 + 1):
                        t = time.process_time()
                        measure(src, out)
                        times.append(time.process_time() - t)
                times.sort()
                print(f"CPU per {size} px {suffix.upper()} source / {round(size * 1.25)} px output: median "
                      f"{times[len(times) // 2] * 1000:.1f} ms, p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms")


if __name__ == "__main__":
    if sys.argv[1:] == ["--cost"]:
        cv2.setNumThreads(1)
        cost_by_size()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
