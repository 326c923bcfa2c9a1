"""The report with variants: one card row per item, its input once and then every variant side by side."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from helpers import write_catalog
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
    assert "</span> · 3 items · 9 variants · generated" in page
    assert re.search(r'<h2>Failed <span class="count">1</span>', page)
    assert re.search(r'<h2>Done <span class="count">2</span>', page)


def _chromium() -> str:
    """The system's chromium, as tests/test_report_browser.py uses it: skipped where missing, but not in CI."""
    found = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
    try:
        import playwright  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium or playwright is missing in CI; .ci/run installs them")
        pytest.skip("chromium or playwright is not installed")
    return found


def test_in_a_browser_the_variants_sit_side_by_side(sandbox, catalog_dir):
    chromium = _chromium()
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url, config=VARIANTS)
    assert main(["run", str(config), "--quiet"]) == 0
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((catalog_dir / "out" / "report.html").as_uri())
            widths = page.evaluate("() => Promise.all([...document.images].map(i => { i.loading = 'eager'; "
                                   "return i.decode().then(() => i.naturalWidth, () => 0); }))")
            rows = page.eval_on_selector_all("article.card.row", """cards => cards.map(card => ({
                id: card.dataset.id, width: card.getBoundingClientRect().width,
                boxes: [...card.querySelectorAll('.strip > figure > .frame')].map(f => {
                    const b = f.getBoundingClientRect(); return [b.left, b.top, b.width]; })}))""")
            main_width = page.eval_on_selector("main .grid", "g => g.getBoundingClientRect().width")
        finally:
            browser.close()
    assert len(widths) == 2 * 4 and all(width > 0 for width in widths)  # each row: its input and 3 outputs
    assert [row["id"] for row in rows] == ["sku-000", "sku-001"]
    for row in rows:
        assert row["width"] == main_width  # a row spans the grid
        lefts, tops, sizes = zip(*row["boxes"])
        assert len(lefts) == 4 and list(lefts) == sorted(lefts) and len(set(lefts)) == 4
        assert max(tops) - min(tops) < 1 and min(sizes) > 150  # one line, frames big enough to judge
