"""report.html in a real browser: the distribution's headless Chromium, driven by Playwright.

Every image decodes with a natural width, the summary agrees with results.csv, every link resolves
(pages, anchors, outputs, tables) and failed items come first. The browser is the system's own
(`apt-get install chromium`); Playwright never downloads one. Without it the test skips, except in
CI (CI=true), where a missing browser is a failure: `.ci/run` installs it.
"""
from __future__ import annotations

import os
import shutil
from urllib.parse import urldefrag, urljoin

import pytest
from PIL import Image

import pipeline.outputs.report
from helpers import TEST_SANDBOX, draw_product, read_csv, static_server, write_catalog
from pipeline.cli import main
from pipeline.sandbox import SANDBOX_KEY

BROWSERS = ("chromium", "chromium-browser")
RANK = {"failed": 0, "pending": 1, "done": 2}


def system_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def require(what: str) -> None:
    """Skip a developer's run that lacks the browser; in CI, fail loudly instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI; .ci/run installs it")
    pytest.skip(f"{what} is not installed (apt-get install chromium; pip install -e '.[test]')")


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = system_chromium()
    if executable is None:
        require("a system chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        require("the playwright package")
    return executable


@pytest.fixture(scope="module")
def browser(chromium, outputs):
    # After the run: Playwright's sync API keeps an event loop on this thread, and a run needs its own.
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True,
                                              args=["--no-sandbox"])  # CI runs as root
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def outputs(sandbox_server, tmp_path_factory):
    """A run with every kind of card over three pages: failed (invalid row, refused prompt), pending, done."""
    root = tmp_path_factory.mktemp("browser") / "catalog"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, colour in enumerate(["red", "blue", "green", "orange", "purple", "teal"]):
        name = f"images/p{i}.{'png' if i % 2 else 'jpg'}"
        draw_product(root / name, colour, shape=i)
        rows.append({"id": f"sku-{i}", "image": name, "title": f"a {colour} thing", "scene": "marble"})
    big = Image.linear_gradient("L").resize((1400, 900)).convert("RGB")  # gets a JPEG thumbnail
    big.save(root / "images" / "big.png")
    grey16 = Image.linear_gradient("L").resize((300, 200)).convert("I").point(lambda v: v * 257)
    grey16.convert("I;16").save(root / "images" / "grey16.png")  # its preview must not be white
    rows += [{"id": "big", "image": "images/big.png", "title": "a big print", "scene": "wood"},
             {"id": "grey16", "image": "images/grey16.png", "title": "a grey print", "scene": "sand"},
             {"id": "refused", "image": "images/p0.jpg", "title": "a forbidden thing", "scene": "sand"},
             {"id": "gone", "image": "images/missing.jpg", "title": "x", "scene": "sand"},
             {"id": "later-1", "image": "images/p1.png", "title": "not yet", "scene": "sand"},
             {"id": "later-2", "image": "images/p2.jpg", "title": "not yet", "scene": "sand"}]
    config = write_catalog(root, base_url=sandbox_server.base_url, rows=rows)
    run_now = [r["id"] for r in rows if not r["id"].startswith(("later", "gone"))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIGHTX_API_KEY", SANDBOX_KEY)
        mp.delenv("LIGHTX_BASE_URL", raising=False)
        mp.setattr(pipeline.outputs.report, "PAGE_SIZE", 5)
        sandbox_server.set_options(**{**TEST_SANDBOX.to_dict(), "refuse_prompt": "forbidden"})
        try:
            assert main(["run", str(config), "--quiet", "--skip-invalid", "--only", *run_now]) == 1
        finally:
            sandbox_server.set_options(**TEST_SANDBOX.to_dict())
    out = root / "out"
    assert sorted(p.name for p in out.glob("report*.html")) == ["report-2.html", "report-3.html", "report.html"]
    return out


@pytest.fixture(scope="module")
def served(outputs):
    """output.dir over HTTP on loopback, as a user's static file server would show it."""
    with static_server(outputs) as url:
        yield url + "/"


# Scroll each image into view (they load lazily, and cards outside the viewport are not rendered),
# wait until it has loaded or failed, and report what the browser decoded.
LOAD_EVERY_IMAGE = """async () => {
  const seen = [];
  for (const img of Array.from(document.images)) {
    img.scrollIntoView({block: "center"});
    if (!img.complete) {
      await new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); });
    }
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    seen.push({src: img.getAttribute("src"), width: img.naturalWidth, decoded: decoded});
  }
  return seen;
}"""


@pytest.fixture(scope="module")
def pages(browser, served):
    """Every report page as the browser saw it: images, links, cards, summary."""
    context = browser.new_context(bypass_csp=True)  # the report forbids scripts; ours only reads it
    page = context.new_page()
    seen: dict[str, dict] = {}
    todo = ["report.html"]
    while todo:
        name = todo.pop(0)
        response = page.goto(served + name)
        assert response is not None and response.status == 200, name
        seen[name] = {
            "images": page.evaluate(LOAD_EVERY_IMAGE),
            "links": page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"),
            "cards": page.eval_on_selector_all("article.card", "els => els.map(a => [a.classList[1], "
                                               "a.querySelector('h3').textContent])"),
            "stats": dict(page.eval_on_selector_all(".stat", "els => els.map(s => [s.querySelector('.label')"
                                                    ".textContent, s.querySelector('.value').textContent])")),
            "ids": page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"),
        }
        todo += [link for link in dict.fromkeys(urldefrag(link)[0] for link in seen[name]["links"])
                 if link.startswith("report") and link not in seen and link not in todo]
    context.close()
    return seen


def test_every_image_loads_and_decodes(pages):
    images = [image for page in pages.values() for image in page["images"]]
    assert len(images) >= 15  # inputs and outputs over three pages
    broken = [image for image in images if not (image["width"] > 0 and image["decoded"])]
    assert broken == []


def test_summary_numbers_equal_results_csv(pages, outputs):
    table = read_csv(outputs / "results.csv")
    stats = pages["report.html"]["stats"]
    for status in ("done", "failed", "pending"):
        assert stats[status.capitalize()] == str(sum(row["status"] == status for row in table)), status
    assert stats["Credits spent"] == str(sum(int(row["credits"] or 0) for row in table))
    assert (stats["Done"], stats["Failed"], stats["Pending"]) == ("8", "2", "2")


def test_every_link_resolves(pages, served, browser):
    context = browser.new_context()
    try:
        for name, page in pages.items():
            for link in page["links"]:
                target, anchor = urldefrag(urljoin(served + name, link))
                if target != served + name:
                    response = context.request.get(target)
                    assert response.status == 200 and response.body(), (name, link)
                if anchor:
                    assert anchor in pages[target.removeprefix(served)]["ids"], (name, link)
    finally:
        context.close()
    every = {link for page in pages.values() for link in page["links"]}
    assert {"results.csv", "results.parquet", "report-2.html", "report-3.html"} <= every
    assert any(link.endswith(".jpg") and not link.startswith("thumbs/") for link in every)  # full outputs


def test_failed_items_come_first_then_pending_then_done(pages):
    cards = [card for name in ("report.html", "report-2.html", "report-3.html") for card in pages[name]["cards"]]
    statuses = [status for status, _ in cards]
    assert statuses == sorted(statuses, key=RANK.__getitem__)
    assert statuses[:2] == ["failed", "failed"] and statuses[-1] == "done"
    assert len(cards) == 12 and {card_id for _, card_id in cards} >= {"gone", "refused", "later-1", "big"}


def test_the_16_bit_grey_input_preview_is_not_white(pages, outputs, browser, served):
    """The preview's pixels, as the browser draws them: a gradient, not the all-white of clipped 16-bit."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        for name, seen in pages.items():
            card = next((c for c in seen["cards"] if c[1] == "grey16"), None)
            if card is not None:
                page.goto(served + name)
                break
        else:
            pytest.fail("no card for grey16")
        figure = page.locator("article.card", has_text="grey16").locator("img[alt=input]")
        figure.scroll_into_view_if_needed()
        # A lazy image starts loading once scrolled to: wait until it is decoded, not a moment longer.
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle(),
                               timeout=30_000)
        values = page.evaluate("""img => { const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight; const g = c.getContext('2d');
            g.drawImage(img, 0, 0); const column = [];
            for (let y = 0; y < c.height; y += 8) column.push(g.getImageData(c.width >> 1, y, 1, 1).data[0]);
            return column; }""", figure.element_handle())
    finally:
        context.close()
    assert values[0] < 40 and values[-1] > 215 and len(set(values)) > 5
