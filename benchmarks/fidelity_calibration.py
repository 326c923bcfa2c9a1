"""Calibrate qa.min_fidelity and measure the score's cost on the sandbox's labelled outputs.

    python benchmarks/fidelity_calibration.py [N]      # N drawn products (default 60), every alteration

Each product is rendered as an independent server would (on a new background with a shadow, 1.25x
larger, moved a little, JPEG quality 85), once faithful and once per alteration; the figures in
docs/fidelity.md come from this script.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from pipeline.media.fidelity import measure
from pipeline.sandbox import alter, products

PROMPTS = ("a product on a white marble counter", "a product on a wooden table in a kitchen",
           "a product on sand at the beach, sunset", "a product on grey concrete", "a product on green grass")


def main(n: int = 60) -> None:
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
    big = products.draw(Path(tempfile.gettempdir()) / "fidelity-1024.jpg", 1, size=1024).read_bytes()
    out = alter.render(big, PROMPTS[0], scale=1.25, shift=(20, -12), quality=85)
    measure(big, out)
    t = time.process_time()
    for _ in range(20):
        measure(big, out)
    print(f"CPU per 1024 px JPEG source / 1280 px output: {(time.process_time() - t) / 20 * 1000:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
