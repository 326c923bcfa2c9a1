"""What the report shows of an item held for review: its score, its heat-map, the commands that decide it."""
from __future__ import annotations

import shlex
from html import escape

from pipeline.inputs.config import RunConfig
from pipeline.run.qa import heatmap_name
from pipeline.store.checkpoint import Row


def command(cfg: RunConfig, flag: str, item_id: str) -> str:
    """The exact shell command that decides one item, to copy from the report."""
    return shlex.join(["pipeline", "review", str(cfg.config_path), flag, item_id])


def card_html(cfg: RunConfig, row: Row, heatmap_exists: bool) -> str:
    """The report's extra lines on a held item's card: the score, the heat-map, the two commands."""
    def num(v, fmt):
        return "—" if v is None else format(v, fmt)
    heat = (f'<figure><div class="frame"><img src="{escape(heatmap_name(row.output_sha256))}" '
            f'alt="difference heat-map" loading="lazy"></div><figcaption>Difference (ΔE)</figcaption></figure>'
            if heatmap_exists and row.output_sha256 else "")
    score = (f'<p class="note">fidelity {num(row.fidelity, ".2f")} (below qa.min_fidelity '
             f'{cfg.qa.min_fidelity:g}) · SSIM {num(row.fidelity_ssim, ".2f")} · ΔE {num(row.fidelity_delta_e, ".1f")}'
             f' · IoU {num(row.fidelity_iou, ".2f")}</p>')
    cmds = "".join(f'<pre class="mono cmd">{escape(command(cfg, flag, row.id))}</pre>'
                   for flag in ("--approve", "--reject"))
    return f'{heat}{score}{cmds}'
