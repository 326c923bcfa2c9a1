"""The report with variants: one card row per item, its input once and then every variant side by side."""
from __future__ import annotations

import re

from conftest import write_catalog
from pipeline.cli import main

VARIANTS = {"variants": [{"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title} on {scene}"}]},
                         {"name": "marketplace", "steps": [{"tool": "remove-background", "background": "#FFFFFF"}]},
                         {"name": "big", "steps": [{"tool": "upscale", "quality": 2}]}],
            "output": {"filename": "{variant}/{id}.jpg"}}
ROW = re.compile(r'<article class="card row (\w+)" data-id="([^"]+)">(.*?)</article>', re.S)
VARIANT = re.compile(r'<figure class="variant (\w+)" data-id="([^"]+)">')


def test_each_item_is_one_row_of_its_variants_in_the_configs_order(sandbox, catalog_dir):
    sandbox.set_options(refuse_prompt="product 1 ")  # sku-001's lifestyle prompt is refused: that variant fails
    config = write_catalog(catalog_dir, 3, base_url=sandbox.base_url, config=VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 1
    page = (catalog_dir / "out" / "report.html").read_text()
    rows = ROW.findall(page)
    assert [(status, item) for status, item, _ in rows] == [("failed", "sku-001"), ("done", "sku-000"),
                                                            ("done", "sku-002")]  # by its worst variant
    for status, item, body in rows:
        assert body.count('alt="input"') == 1 and f'<h3 class="mono" title="{item}">{item}</h3>' in body
        shown = VARIANT.findall(body)
        assert [unit for _, unit in shown] == [f"{item}/{name}" for name in ("lifestyle", "marketplace", "big")]
        expected = ["failed", "done", "done"] if item == "sku-001" else ["done"] * 3
        assert [unit_status for unit_status, _ in shown] == expected
        assert 'style="--n:4"' in body  # the input and three outputs in one strip
    failed = rows[0][2]
    assert "PROMPT_NOT_ALLOWED" in failed and 'href="marketplace/sku-001.jpg"' in failed
    assert 'href="lifestyle/sku-001.jpg"' not in failed
    # The summary counts variants, as results.csv has a row for each; the sections count items.
    stats = dict((label, value) for value, label in re.findall(
        r'<span class="value">([^<]+)</span><span class="label">([^<]+)</span>', page))
    assert (stats["Done"], stats["Failed"], stats["Pending"]) == ("8", "1", "0")
    assert re.search(r'<h2>Failed <span class="count">1</span>', page)
    assert re.search(r'<h2>Done <span class="count">2</span>', page)
