"""validate(): the matrix of bad inputs (bad_inputs.py), the example catalog, and the plan."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from bad_inputs import BAD_CASES, CONFIG, HEADER, JPEG, PNG, Case, catalog, without, write_case
from helpers import problems_of
from pipeline.inputs.validate import Overview, format_plan, problem_lines, validate

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.name)
def test_bad_input_names_the_culprit(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # file names print relative to the working directory
    lines = problems_of(write_case(case, tmp_path), case.env)
    assert all(line.startswith(("catalog.", "items.yaml", "missing.csv", "LIGHTX_")) for line in lines), lines
    assert any(all(part in line for part in case.expect) for line in lines), lines
    assert len(lines) == case.lines, lines
    assert all("\n" not in line and "Traceback" not in line for line in lines)
    assert not any(secret in line for line in lines for secret in case.absent)


def test_matrix_is_big_and_named_uniquely() -> None:
    assert len(BAD_CASES) >= 20
    assert len({case.name for case in BAD_CASES}) == len(BAD_CASES)


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = CONFIG + "limits:\n  concurrency: 0\n  concurency: 2\npoll:\n  interval_s: 0\n"
    lines = problems_of(write_case(Case("x", catalog(config=config), ()), tmp_path), env={})
    assert len(lines) == 3, lines
    csv = HEADER + "sku 1,a.png,A\nsku-2,missing.png,B\nsku-3,a.png,\nsku-3,a.png,C\n"
    lines = problems_of(write_case(Case("x", catalog(config="manifest: catalog.csv\nprompt: '{title}'\n", csv=csv),
                                         ()), tmp_path), env={})
    assert [line.split(":")[0] for line in lines] == [
        "catalog.csv row 2 (id 'sku 1')", "catalog.csv row 3 (id sku-2)", "catalog.csv row 4 (id sku-3)",
        "catalog.csv row 5 (id sku-3)"]


@pytest.mark.parametrize("config", [
    CONFIG + "limits:\n  concurency: 4\n",                                # a typo beside a good prompt
    'manifest: catalog.csv\nprompt: "{title on marble"\nlimits:\n  concurrency: 0\n',  # a broken template
    CONFIG + 'output:\n  filename: "{id}.png"\n',                        # a broken file name
])
def test_config_and_manifest_problems_are_reported_together(config: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    csv = HEADER + "sku-1,gone.png,A\nsku-2,a.png,B\nsku-2,a.png,C\nsku-4,cut.jpg,D\n"
    files = catalog(config=config, csv=csv, **{"cut.jpg": JPEG[:100]})
    lines = problems_of(write_case(Case("x", files, ()), tmp_path), env={})
    config_lines = [line for line in lines if line.startswith("catalog.yaml: ")]
    assert 1 <= len(config_lines) <= 2 and lines[:len(config_lines)] == config_lines, lines
    assert [line.split(":")[0] for line in lines[len(config_lines):]] == [
        "catalog.csv row 2 (id sku-1)", "catalog.csv row 4 (id sku-2)", "catalog.csv row 5 (id sku-4)"], lines


@pytest.mark.parametrize("config", ["manifest: 5\nlimits: 3\n", "limits: 3\n", "manifest: catalog.txt\n"])
def test_a_config_that_cannot_name_its_manifest_reports_only_itself(config: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = problems_of(write_case(Case("x", catalog(config=config, csv=HEADER + "sku-1,gone.png,A\n"), ()),
                                    tmp_path), env={})
    assert lines and all(line.startswith("catalog.yaml: ") for line in lines), lines


def test_a_missing_manifest_is_reported_with_the_config_problems(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = without(catalog(config=CONFIG + "poll:\n  interval_s: -1\n"), "catalog.csv")
    lines = problems_of(write_case(Case("x", files, ()), tmp_path), env={})
    assert [line.split(":")[:2] for line in lines] == [["catalog.yaml", " poll.interval_s"],
                                                      ["catalog.csv", " manifest not found"]], lines


def test_a_whole_jpeg_is_judged_by_its_last_bytes_without_decoding(tmp_path: Path, monkeypatch) -> None:
    from pipeline.inputs.manifest import image_problem
    whole, trailer = tmp_path / "whole.jpg", tmp_path / "trailer.jpg"
    whole.write_bytes(JPEG)
    trailer.write_bytes(JPEG + b"camera trailer data " * 10)  # data after the end marker, still decodes
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda im: decoded.append(im) or real_load(im))
    assert image_problem(whole) is None and decoded == []
    assert image_problem(trailer) is None and decoded  # only a file without the marker at its end


def test_image_problems_move_items_to_invalid(tmp_path: Path) -> None:
    files = catalog(csv=HEADER + "sku-1,a.png,A\nsku-2,gone.png,B\nsku-3,a.png,C\n")
    cfg, manifest, plan = validate(write_case(Case("x", files, ()), tmp_path), env={})
    assert [item.id for item in manifest.items] == ["sku-1", "sku-3"]
    assert [(bad.id, bad.row) for bad in manifest.invalid] == [("sku-2", 3)]
    assert plan == Overview(items=2, invalid=1, distinct_images=1, credits=2)
    _, manifest, plan = validate(tmp_path / "catalog.yaml", env={}, check_images=False)
    assert len(manifest.items) == 3 and plan.invalid == 0


def test_example_catalog_is_valid() -> None:
    cfg, manifest, plan = validate(REPO / "configs" / "catalog.yaml", env={})
    assert problem_lines(manifest) == []
    assert plan == Overview(items=len(manifest.items), invalid=0, distinct_images=len(manifest.items),
                        credits=len(manifest.items))
    assert plan.items >= 8
    assert cfg.output.dir == REPO / "outputs"
    assert cfg.prompt and "{" in cfg.prompt
    assert all(item.prompt != cfg.prompt and "{" not in item.prompt for item in manifest.items)


def test_example_config_points_editors_at_the_schema() -> None:
    first = (REPO / "configs" / "catalog.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/config.schema.json"


def test_example_images_are_small_jpegs_and_pngs_on_a_plain_background() -> None:
    paths = sorted((REPO / "configs" / "images").iterdir())
    formats = set()
    for path in paths:
        assert path.stat().st_size < 60_000, path
        with Image.open(path) as img:
            formats.add(img.format)
            assert img.size == (512, 512)
            rgb = img.convert("RGB")
            corners = {rgb.getpixel(xy) for xy in ((0, 0), (511, 0), (0, 511), (511, 511))}
            assert len(corners) == 1, path
    assert formats == {"JPEG", "PNG"}


def test_format_plan() -> None:
    text = format_plan(Overview(items=12, invalid=1, distinct_images=1, credits=12))
    assert text == ("12 items, 1 distinct image, 1 invalid\n"
                    "a full run would spend 12 credits (1 per generated image; failed orders are free)")


def test_pipeline_validate_counts_the_rows_it_does_not_hold(tmp_path: Path, monkeypatch) -> None:
    """`pipeline validate` (inputs.validate.overview) keeps only the rows whose image is still to be
    checked, and says what validate() says of the whole manifest: counts, distinct images, every line."""
    from pipeline.inputs import validate as module
    monkeypatch.chdir(tmp_path)
    rows = [f"sku-{n},{'a.png' if n % 3 else 'b.png'},T{n}" for n in range(30)]
    rows[5] = "sku-5,gone.png,T5"                  # missing
    rows[7] = "sku-7,cut.jpg,T7"                   # truncated, and used again below
    rows[9] = "sku-9,cut.jpg,T9"
    rows[11] = "sku-11,https://cdn.example.com/p.jpg,T11"   # a URL: checked when fetched
    rows[13] = "sku-13,https://cdn.example.com/p.jpg,T13"
    rows[15] = "sku-1,a.png,T15"                   # a duplicate id
    rows[17] = "sku-17,a.png,"                     # an empty title: still a prompt, a valid row
    files = catalog(csv=HEADER + "\n".join(rows) + "\n", **{"b.png": PNG, "cut.jpg": JPEG[:200]})
    config = write_case(Case("x", files, ()), tmp_path)
    held = []
    real = module.Counted.append
    monkeypatch.setattr(module.Counted, "append", lambda self, item: (real(self, item), held.__setitem__(
        slice(None), [i.id for i in self.held]))[0])
    _, counted = module.overview(config, env={})
    assert held == ["sku-5", "sku-7", "sku-9"]  # the bad local images' rows; an http(s) URL is not fetched
    _, manifest, plan = validate(config, env={})
    assert counted == dataclasses.replace(plan, problems=tuple(problem_lines(manifest)))
    assert (counted.items, counted.invalid, counted.distinct_images, counted.credits) == (26, 4, 3, 26)
    assert [line.split(":")[0] for line in counted.problems] == [
        "catalog.csv row 7 (id sku-5)", "catalog.csv row 9 (id sku-7)", "catalog.csv row 11 (id sku-9)",
        "catalog.csv row 17 (id sku-1)"]


@pytest.mark.parametrize("images", ["first", "all"])
def test_pipeline_validate_counts_a_store_export_as_validate_reads_it(tmp_path: Path, images: str,
                                                                    monkeypatch) -> None:
    """A Shopify export with a product without a picture, HTML descriptions and a local picture that
    is gone: the counted overview, store summary included, is validate()'s."""
    from store_exports import write_shopify
    from pipeline.inputs.validate import overview
    monkeypatch.chdir(tmp_path)
    write_shopify(tmp_path / "products_export.csv", "https://cdn.example.com/files", "current")
    text = (tmp_path / "products_export.csv").read_text(encoding="utf-8")
    (tmp_path / "a.png").write_bytes(PNG)
    first = text.split("https://cdn.example.com/files/", 2)[1].split(",")[0]
    text = text.replace(f"https://cdn.example.com/files/{first}", "a.png", 1)  # one picture local, one gone
    text = text.replace("https://cdn.example.com/files/", "gone/", 1)
    (tmp_path / "products_export.csv").write_text(text, encoding="utf-8")
    (tmp_path / "catalog.yaml").write_text(f"manifest: products_export.csv\nprompt: '{{title}}'\n"
                                           f"store:\n  images: {images}\n")
    _, manifest, plan = validate(tmp_path / "catalog.yaml", env={})
    _, counted = overview(tmp_path / "catalog.yaml", env={})
    assert counted == dataclasses.replace(plan, problems=tuple(problem_lines(manifest)))
    assert counted.store is not None and counted.store.skipped
    assert counted.invalid == (images == "all")  # the gone picture is a product's second


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP"])
def test_a_whole_picture_is_judged_by_its_end_without_decoding_and_a_trailer_is_allowed(fmt, tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """As for a JPEG above: a whole file is valid from its header and end alone; one with data after
    its end (some editors write it) is decoded to be sure, and valid."""
    import io
    from pipeline.inputs.manifest import image_problem
    out = io.BytesIO()
    Image.effect_noise((48, 40), 60).convert("RGB").save(out, fmt)
    whole, trailer = tmp_path / f"whole.{fmt.lower()}", tmp_path / f"trailer.{fmt.lower()}"
    whole.write_bytes(out.getvalue())
    trailer.write_bytes(out.getvalue() + b"editor trailer data " * 10)
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda im: decoded.append(im) or real_load(im))
    assert image_problem(whole) is None and decoded == []
    assert image_problem(trailer) is None
    assert bool(decoded) == (fmt != "WEBP")  # a WebP's RIFF size says where it ends: data after it is fine


def test_a_header_read_never_raises_on_a_file_cut_anywhere() -> None:
    """image_header is read from whatever a file holds: every prefix of a real JPEG, PNG, GIF and WebP
    gives a size or None, never an exception (a PNG cut inside its IHDR used to raise struct.error)."""
    import io
    from pipeline.media.images import header_of
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 200, 30)).save(out, fmt)
        data = out.getvalue()
        assert header_of(data)[1:] == (40, 30)
        for n in range(len(data)):
            found = header_of(data[:n])
            assert found is None or found == (fmt, 40, 30), (fmt, n)
