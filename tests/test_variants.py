"""Config `variants`: parsed into frozen dataclasses, validated before spend, one line per problem."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest
import yaml
from PIL import Image

import helpers
from pipeline.cli import main
from pipeline.inputs.config import load_config
from pipeline.inputs.validate import format_plan, validate
from pipeline.inputs.variants import IMPLICIT, Step, Variant, variants_of

REPO = Path(__file__).parent.parent
ISSUE_VARIANTS = [
    {"name": "lifestyle", "steps": [{"tool": "background-generator", "prompt": "{title} on a marble counter"},
                                    {"tool": "upscale", "quality": 2}]},
    {"name": "marketplace", "steps": [{"tool": "remove-background", "background": "#FFFFFF"}]},
]


def catalog(root: Path, variants=None, *, rows=None, columns=("id", "image", "title"), sizes=None,
            **config) -> Path:
    """A manifest of small JPEGs (``sizes`` per row, default 64x48) and a config with ``variants``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = rows or [{"id": f"sku-{i}", "image": f"images/p{i}.jpg", "title": f"product {i}"} for i in range(3)]
    for i, row in enumerate(rows):
        path = root / row["image"]
        if not path.exists():
            Image.new("RGB", (sizes or {}).get(i, (64, 48)), "white").save(path)
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    (root / "catalog.csv").write_text("\n".join(lines) + "\n")
    doc = {"manifest": "catalog.csv", "output": {"filename": "{variant}/{id}.jpg"}, **config}
    if variants is not None:
        doc["variants"] = variants
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


problems_of = functools.partial(helpers.problems_of, env={})  # no LIGHTX_* in the environment


# parsing

def test_variants_become_frozen_dataclasses(tmp_path):
    cfg = load_config(catalog(tmp_path, ISSUE_VARIANTS), env={})
    assert cfg.variants == (
        Variant("lifestyle", (Step("background-generator", (("prompt", "{title} on a marble counter"),)),
                              Step("upscale", (("quality", 2),)))),
        Variant("marketplace", (Step("remove-background", (("background", "#FFFFFF"),)),)))
    assert [v.credits() for v in cfg.variants] == [2, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.variants[0].name = "x"  # type: ignore[misc]


def test_without_variants_there_is_one_implicit_background_generator_variant():
    cfg = load_config(REPO / "configs" / "catalog.yaml", env={})
    assert cfg.variants == () and variants_of(cfg) == (IMPLICIT,)
    assert IMPLICIT.steps == (Step("background-generator", (("prompt", "{prompt}"),)),)


def test_without_variants_a_variant_column_is_still_a_column(tmp_path):
    rows = [{"id": "a", "image": "images/a.jpg", "prompt": "on marble", "variant": "red"}]
    path = catalog(tmp_path, rows=rows, columns=("id", "image", "prompt", "variant"))
    _, manifest, _ = validate(path, env={})
    assert [(i.output_name, i.output_names) for i in manifest.items] == [("red/a.jpg", ())]


# the example config

def test_the_example_variants_config_validates():
    cfg, manifest, plan = validate(REPO / "configs" / "variants.yaml", env={})
    assert [v.name for v in cfg.variants] == ["lifestyle", "marketplace"]
    assert not manifest.invalid and plan.credits == len(manifest.items) * 3 == 30
    assert manifest.items[0].output_names == ("lifestyle/mug-01.jpg", "marketplace/mug-01.jpg")
    assert format_plan(plan).splitlines()[1] == (
        "a full run would spend 30 credits (per item: lifestyle 2 steps, marketplace 1 step; "
        "1 credit per step; failed orders are free)")


def test_cli_validates_variants_and_dry_runs_them_at_one_credit_per_step(capsys, tmp_path):
    import shutil
    shutil.copytree(REPO / "configs", tmp_path / "configs")  # the state dir goes beside the copy
    path = str(tmp_path / "configs" / "variants.yaml")
    assert main(["validate", path]) == 0
    assert "30 credits" in capsys.readouterr().out
    assert main(["run", path, "--sandbox", "--dry-run"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("forced 0 · held 0 · rebuy 0 · credits needed 30")


def test_a_manifest_without_prompts_is_fine_with_variants(tmp_path):
    _, manifest, _ = validate(catalog(tmp_path, ISSUE_VARIANTS), env={})
    assert len(manifest.items) == 3 and not manifest.invalid


# validation before spend: one line naming file, variant, step and field

def _upscale(quality=2):
    return [{"name": "big", "steps": [{"tool": "background-generator", "prompt": "{title}"},
                                      {"tool": "upscale", "quality": quality}]}]


@pytest.mark.parametrize("variants,expected", [
    ([{"name": "v", "steps": [{"tool": "upscal", "quality": 2}]}],
     "variant v, step 1: unknown tool 'upscal' (did you mean 'upscale'?)"),
    ([{"name": "v", "steps": [{"tool": "upscale"}]}], "variant v, step 1 (upscale), quality is required by upscale"),
    ([{"name": "v", "steps": [{"tool": "upscale", "quality": 2, "qualty": 4}]}],
     "variant v, step 1 (upscale), qualty: unknown field for upscale (did you mean 'quality'?)"),
    ([{"name": "v", "steps": [{"tool": "upscale", "quality": 3}]}],
     "variant v, step 1 (upscale), quality: must be 2 or 4 (got 3)"),
    ([{"name": "v", "steps": [{"tool": "upscale", "quality": [2]}]}],
     "variant v, step 1 (upscale), quality must be text or a whole number (quote a colour: in YAML, # starts a "
     "comment, so write \"#FFFFFF\")"),
    ([{"name": "v", "steps": [{"tool": "expand-photo", "top_padding": -4}]}],
     "variant v, step 1 (expand-photo), top_padding: must be at least 0 (got -4)"),
    ([{"name": "v", "steps": [{"tool": "background-generator", "prompt": "{title"}]}],
     "variant v, step 1 (background-generator), prompt: expected '}' before end of string in '{title'; "
     "write {{ and }} for literal braces"),
    ([{"name": "Big One", "steps": [{"tool": "upscale", "quality": 2}]}],
     "variants[0].name may contain only a-z 0-9 _ - (it becomes part of file names) (got 'Big One')"),
    ([{"name": "v", "steps": []}], "variant v, steps is empty: a variant needs at least one step"),
    ([{"name": "v", "steps": [{"tool": "upscale", "quality": 2}]},
      {"name": "v", "steps": [{"tool": "upscale", "quality": 4}]}],
     "variant v: the name is also used by variants[0]; names must be unique"),
    ([{"name": "v", "steps": [{"tool": "remove-background"}]}],
     "variant v, step 1 (remove-background): the picture it makes is a PNG (a transparent cut-out), but "
     "output.filename ends in .jpg; give background a colour, e.g. \"#FFFFFF\""),
])
def test_config_problems(tmp_path, variants, expected):
    path = catalog(tmp_path, variants)
    assert problems_of(path) == [f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}: "
                                 f"{expected}"]
    assert main(["validate", str(path)]) == 2


def test_several_variants_must_use_variant_in_the_file_name(tmp_path):
    path = catalog(tmp_path, ISSUE_VARIANTS, output={"filename": "{id}.jpg"})
    assert problems_of(path) == [f"{path}: output.filename '{{id}}.jpg' must use {{variant}} when there are several "
                                 f"variants, e.g. \"{{variant}}/{{id}}.jpg\"; otherwise they write the same file"]


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    variants = [{"name": "a", "steps": [{"tool": "upscale", "quality": 3, "qualty": 2}, {"tool": "paint"},
                                        {"tool": "upscale"}]},
                {"name": "b", "steps": [{"tool": "product-photoshoot", "colour": "red"}]}]
    path = catalog(tmp_path, variants)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(f"{path}: ", 1)[1] for line in err] == [
        "variant a, step 1 (upscale), qualty: unknown field for upscale (did you mean 'quality'?)",
        "variant a, step 1 (upscale), quality: must be 2 or 4 (got 3)",
        "variant a, step 2: unknown tool 'paint' (known tools: background-generator, product-photoshoot, "
        "remove-background, upscale, expand-photo)",
        "variant a, step 3 (upscale), quality is required by upscale",
        "variant b, step 1 (product-photoshoot), colour: unknown field for product-photoshoot "
        "(product-photoshoot takes style_image, prompt)"]


def _photoshoot(style="{style_image}"):
    return [{"name": "shoot", "steps": [{"tool": "product-photoshoot", "style_image": style}]}]


def test_a_style_image_column_missing_from_the_manifest(tmp_path):
    path = catalog(tmp_path, _photoshoot())
    (tmp_path / "images" / "p2.jpg").unlink()
    assert problems_of(path) == [
        f"{path}: variant shoot, step 1 (product-photoshoot), style_image uses {{style_image}}, but "
        f"{tmp_path / 'catalog.csv'} has no 'style_image' column (columns: id, image, title)",
        f"{tmp_path / 'catalog.csv'} row 4 (id sku-2): image 'images/p2.jpg' not found "
        f"({tmp_path / 'images' / 'p2.jpg'})"]


def test_a_style_image_empty_or_missing_in_a_row(tmp_path):
    Image.new("RGB", (20, 20), "green").save(tmp_path / "style.png")
    rows = [{"id": "a", "image": "images/a.jpg", "style_image": "style.png"},
            {"id": "b", "image": "images/b.jpg", "style_image": ""},
            {"id": "c", "image": "images/c.jpg", "style_image": "nowhere.png"}]
    path = catalog(tmp_path, _photoshoot(), rows=rows, columns=("id", "image", "style_image"))
    manifest_path = tmp_path / "catalog.csv"
    assert problems_of(path) == [
        f"{manifest_path} row 3 (id b): variant shoot, step 1 (product-photoshoot), style_image: is empty",
        f"{manifest_path} row 4 (id c): variant shoot, step 1 (product-photoshoot), style_image: image "
        f"'nowhere.png' not found ({tmp_path / 'nowhere.png'})"]
    _, manifest, _ = validate(path, env={})
    assert [i.id for i in manifest.items] == ["a"]


def test_a_literal_style_image_is_checked_once(tmp_path):
    path = catalog(tmp_path, _photoshoot("styles/missing.jpg"))
    assert problems_of(path) == [f"{path}: variant shoot, step 1 (product-photoshoot), style_image: image "
                                 f"'styles/missing.jpg' not found ({tmp_path / 'styles' / 'missing.jpg'})"]


@pytest.mark.parametrize("size,quality,problem", [
    ((2049, 40), 2, "an input of 2049x40 px is over upscale's limit of 2048 px a side"),
    ((1025, 40), 4, "an input of 1025x40 px is over upscale's limit of 1024 px a side at quality 4"),
    ((1025, 40), 2, None),
    ((1024, 1024), 4, None),
])
def test_an_image_too_large_for_upscale(tmp_path, size, quality, problem):
    path = catalog(tmp_path, _upscale(quality), sizes={1: size})
    expected = [] if problem is None else [
        f"{tmp_path / 'catalog.csv'} row 3 (id sku-1): variant big, step 2 (upscale), input: {problem} "
        f"(the output of step 1 (background-generator); assumed from its input's size)"]
    assert problems_of(path) == expected


def test_upscale_after_expand_photo_counts_the_padding(tmp_path):
    variants = [{"name": "wide", "steps": [{"tool": "expand-photo", "left_padding": 500, "right_padding": 500},
                                           {"tool": "upscale", "quality": "{q}"}]}]
    rows = [{"id": "a", "image": "images/a.jpg", "q": "2"}, {"id": "b", "image": "images/b.jpg", "q": "4"},
            {"id": "c", "image": "images/c.jpg", "q": "3"}]
    path = catalog(tmp_path, variants, rows=rows, columns=("id", "image", "q"))
    manifest_path = tmp_path / "catalog.csv"
    assert problems_of(path) == [
        f"{manifest_path} row 3 (id b): variant wide, step 2 (upscale), input: an input of 1064x48 px is over "
        f"upscale's limit of 1024 px a side at quality 4 (the output of step 1 (expand-photo); assumed from its "
        f"input's size)",
        f"{manifest_path} row 4 (id c): variant wide, step 2 (upscale), quality: must be 2 or 4 (got 3)"]


def test_an_upscale_first_is_checked_against_the_source(tmp_path):
    path = catalog(tmp_path, [{"name": "big", "steps": [{"tool": "upscale", "quality": 4}]}], sizes={0: (1100, 30)})
    assert problems_of(path) == [
        f"{tmp_path / 'catalog.csv'} row 2 (id sku-0): variant big, step 1 (upscale), input: an input of 1100x30 px "
        f"is over upscale's limit of 1024 px a side at quality 4 (the source's size)"]


def test_a_variant_column_clashes_with_variants(tmp_path):
    rows = [{"id": "a", "image": "images/a.jpg", "variant": "x"}]
    path = catalog(tmp_path, ISSUE_VARIANTS, rows=rows, columns=("id", "image", "title", "variant"))
    assert problems_of(path) == [
        f"{tmp_path / 'catalog.csv'}: has a 'variant' column, but with variants in the config {{variant}} is "
        f"the variant's name; rename the column"]


def test_step_templates_see_prompt_and_variant(tmp_path):
    variants = [{"name": "v", "steps": [{"tool": "background-generator", "prompt": "{prompt} for {variant}"}]}]
    rows = [{"id": "a", "image": "images/a.jpg", "prompt": "on marble"}, {"id": "b", "image": "images/b.jpg"}]
    path = catalog(tmp_path, variants, rows=rows, columns=("id", "image", "prompt"))
    assert problems_of(path) == [f"{tmp_path / 'catalog.csv'} row 3 (id b): variant v, step 1 "
                                 f"(background-generator), prompt: uses {{prompt}}, which this item does not have"]
