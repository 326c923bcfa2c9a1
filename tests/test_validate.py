"""validate(): the matrix of bad inputs, the example catalog, and the plan.

``BAD_CASES`` and ``write_case`` are meant for reuse by the CLI tests (``from test_validate import
BAD_CASES, write_case``): every case must make ``pipeline validate`` exit 2, and one line of its
stderr must contain every string in ``expect``, and nothing in ``absent``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.inputs.validate import Overview, format_plan, problem_lines, validate

REPO = Path(__file__).resolve().parent.parent


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


JPEG = _jpeg()
CONFIG = 'manifest: catalog.csv\nprompt: "{title} on a marble counter"\n'
HEADER = "id,image,title\n"
ROWS = "sku-1,a.png,A mug\nsku-2,a.png,A bottle\n"


@dataclass(frozen=True)
class Case:
    """One broken catalog: files to write (``catalog.yaml`` is the config) and what must be said."""
    name: str
    files: dict[str, str | bytes]
    expect: tuple[str, ...]                    # one problem line contains all of these
    lines: int = 1                             # exactly this many problem lines
    env: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()               # never printed (secrets)
    config: str = "catalog.yaml"


def catalog(config: str = CONFIG, csv: str | bytes = HEADER + ROWS, **files: str | bytes) -> dict[str, str | bytes]:
    """A valid two-item catalog, with the given parts replaced or added."""
    return {"catalog.yaml": config, "catalog.csv": csv, "a.png": PNG, **files}


def without(files: dict[str, str | bytes], name: str) -> dict[str, str | bytes]:
    return {k: v for k, v in files.items() if k != name}


def write_case(case: Case, root: Path) -> Path:
    """Write the case's files under ``root``; return the config path (which may not exist)."""
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return root / case.config


def _yaml_catalog(items: str) -> dict[str, str | bytes]:
    return catalog(config='manifest: items.yaml\nprompt: "{title} on a marble counter"\n', csv="", **{
        "items.yaml": items})


BAD_CASES: list[Case] = [
    # -- the config file
    Case("config-missing", without(catalog(), "catalog.yaml"), ("catalog.yaml: config file not found",)),
    Case("config-empty", catalog(config=""), ("catalog.yaml: the config is empty",)),
    Case("config-not-mapping", catalog(config="- manifest: catalog.csv\n"),
         ("catalog.yaml: the config must be a mapping", "not a list")),
    Case("config-yaml-syntax", catalog(config="manifest: catalog.csv\nlimits:\n  concurrency: [4\n"),
         ("catalog.yaml: line 4", "YAML syntax error")),
    Case("config-duplicate-key", catalog(config=CONFIG + "manifest: other.csv\n"),
         ("catalog.yaml: line 3", "duplicate key 'manifest'")),
    Case("config-binary", catalog(config=bytes(range(256))), ("catalog.yaml: is a binary file",)),
    Case("config-not-utf8", catalog(config="manifest: caf\xe9.csv\n".encode("latin-1")),
         ("catalog.yaml: line 1: not UTF-8",)),
    Case("unknown-key", catalog(config=CONFIG + "limits:\n  concurency: 4\n"),
         ("catalog.yaml: limits.concurency: unknown key", "did you mean 'concurrency'")),
    Case("unknown-section", catalog(config=CONFIG + "limit:\n  concurrency: 4\n"),
         ("catalog.yaml: limit: unknown key", "'limits'")),
    Case("wrong-type", catalog(config=CONFIG + "limits:\n  concurrency: many\n"),
         ("catalog.yaml: limits.concurrency: 'many' is not of type 'integer'",)),
    Case("manifest-wrong-type", catalog(config="manifest: 5\n"), ("catalog.yaml: manifest: 5 is not of type",)),
    Case("zero-concurrency", catalog(config=CONFIG + "limits:\n  concurrency: 0\n"),
         ("catalog.yaml: limits.concurrency: 0 is less than the minimum of 1",)),
    Case("negative-poll-interval", catalog(config=CONFIG + "poll:\n  interval_s: -1\n"),
         ("catalog.yaml: poll.interval_s: -1",)),
    Case("zero-requests-per-second", catalog(config=CONFIG + "limits:\n  requests_per_second: 0\n"),
         ("catalog.yaml: limits.requests_per_second: 0",)),
    Case("negative-retries", catalog(config=CONFIG + "retries:\n  failed_orders: -1\n"),
         ("catalog.yaml: retries.failed_orders: -1 is less than the minimum of 0",)),
    Case("api-key-in-yaml", catalog(config=CONFIG + "api_key: sk-live-0123456789\n"),
         ("catalog.yaml: api_key: unknown key", "environment variable LIGHTX_API_KEY"),
         absent=("sk-live-0123456789",)),
    Case("key-in-api-section", catalog(config=CONFIG + "api:\n  key: sk-live-0123456789\n"),
         ("catalog.yaml: api.key: unknown key", "never read from the config"), absent=("sk-live-0123456789",)),
    Case("key-in-key-env", catalog(config=CONFIG + "api:\n  key_env: sk-live-0123-456789\n"),
         ("catalog.yaml: api.key_env must be the name of an environment variable",),
         absent=("sk-live-0123-456789",)),
    Case("base-url-env", catalog(), ("LIGHTX_BASE_URL must be an http:// or https:// URL", "ftp://x"),
         env={"LIGHTX_BASE_URL": "ftp://x"}),
    Case("manifest-key-missing", catalog(config='prompt: "a mug"\n'), ("catalog.yaml: manifest is required",)),
    Case("manifest-extension", catalog(config="manifest: catalog.txt\n"),
         ("catalog.yaml: manifest must name a .csv, .tsv, .xml, .parquet, .jsonl, .yaml or .yml file", "catalog.txt")),
    Case("template-syntax", catalog(config='manifest: catalog.csv\nprompt: "{title on marble"\n'),
         ("catalog.yaml: prompt:", "'{title on marble'")),
    Case("placeholder-without-column", catalog(config='manifest: catalog.csv\nprompt: "{title} in {color}"\n'),
         ("catalog.yaml: prompt uses {color}", "catalog.csv has no 'color' column")),
    Case("filename-not-jpeg", catalog(config=CONFIG + 'output:\n  filename: "{id}.png"\n'),
         ("catalog.yaml: output.filename must end in .jpg or .jpeg",)),
    Case("filename-absolute", catalog(config=CONFIG + 'output:\n  filename: "/tmp/{id}.jpg"\n'),
         ("catalog.yaml: output.filename:", "is an absolute path")),
    # -- the manifest file
    Case("manifest-missing", catalog(config="manifest: missing.csv\nprompt: x\n"),
         ("missing.csv: manifest not found",)),
    Case("manifest-empty", catalog(csv=""), ("catalog.csv: the manifest is empty",)),
    Case("manifest-header-only", catalog(csv=HEADER), ("catalog.csv: the manifest has a header but no items",)),
    Case("manifest-binary", catalog(csv=PNG), ("catalog.csv: is a binary file",)),
    Case("manifest-not-utf8", catalog(csv=(HEADER + "sku-1,a.png,Caf\xe9 mug\n").encode("latin-1")),
         ("catalog.csv: line 2: not UTF-8", "save the file as UTF-8")),
    Case("manifest-utf16", catalog(csv=(HEADER + ROWS).encode("utf-16")), ("catalog.csv: is UTF-16",)),
    Case("missing-column", catalog(csv="id,title\nsku-1,A mug\n"), ("catalog.csv: has no 'image' column",)),
    Case("missing-prompt-column", catalog(config="manifest: catalog.csv\n"),
         ("catalog.csv: has no 'prompt' column", "the config sets no prompt")),
    Case("duplicate-column", catalog(csv="id,image,title,title\nsku-1,a.png,A,B\n"),
         ("catalog.csv: row 1: column 'title' appears more than once",)),
    Case("yaml-manifest-syntax", _yaml_catalog("items:\n  - id: sku-1\n    image: [a.png\n"),
         ("items.yaml: line 4", "YAML syntax error")),
    Case("yaml-manifest-not-mapping", _yaml_catalog("- id: sku-1\n  image: a.png\n"),
         ("items.yaml: a YAML manifest must be a mapping with `items:`",)),
    Case("yaml-manifest-no-items", _yaml_catalog("items: []\n"), ("items.yaml: items is empty",)),
    Case("yaml-manifest-unknown-key", _yaml_catalog("items:\n  - {id: sku-1, image: a.png, title: A}\nname: x\n"),
         ("items.yaml: name: unknown key",)),
    # -- one row
    Case("missing-image", catalog(csv=HEADER + "sku-1,b.png,A mug\n"),
         ("catalog.csv row 2 (id sku-1): image 'b.png' not found",)),
    Case("image-does-not-decode", catalog(csv=HEADER + "sku-1,bad.png,A mug\n", **{"bad.png": b"not a png"}),
         ("catalog.csv row 2 (id sku-1): image 'bad.png' is not an image",)),
    Case("image-truncated-jpeg", catalog(csv=HEADER + "sku-1,cut.jpg,A mug\n", **{"cut.jpg": JPEG[:len(JPEG) // 2]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.jpg' is truncated: no JPEG end-of-image marker",)),
    Case("image-jpeg-without-end-marker", catalog(csv=HEADER + "sku-1,cut.jpg,A mug\n", **{"cut.jpg": JPEG[:-2]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.jpg' is truncated",)),
    Case("image-is-directory", catalog(csv=HEADER + "sku-1,sub,A mug\n", **{"sub/x.png": PNG}),
         ("catalog.csv row 2 (id sku-1): image 'sub' is a directory",)),
    Case("duplicate-id", catalog(csv=HEADER + "sku-1,a.png,A mug\nsku-1,a.png,A bottle\n"),
         ("catalog.csv row 3 (id sku-1): duplicate id: first used on row 2",)),
    Case("bad-id-chars", catalog(csv=HEADER + "sku 1,a.png,A mug\n"),
         ("catalog.csv row 2 (id 'sku 1'): id may contain only A-Z a-z 0-9 . _ -",)),
    Case("id-too-long", catalog(csv=HEADER + "x" * 129 + ",a.png,A mug\n"),
         ("catalog.csv row 2 (id 'xxxx", "id is longer than 128 characters")),
    Case("empty-id", catalog(csv=HEADER + ",a.png,A mug\n"), ("catalog.csv row 2: id is empty",)),
    Case("empty-prompt", catalog(config="manifest: catalog.csv\n", csv="id,image,prompt\nsku-1,a.png,\n"),
         ("catalog.csv row 2 (id sku-1): prompt is empty",)),
    Case("blank-prompt", catalog(config="manifest: catalog.csv\n", csv="id,image,prompt\nsku-1,a.png,   \n"),
         ("catalog.csv row 2 (id sku-1): prompt is empty",)),
    Case("prompt-too-long", catalog(config="manifest: catalog.csv\n", csv=f"id,image,prompt\nsku-1,a.png,{'p' * 501}\n"),
         ("catalog.csv row 2 (id sku-1): prompt is longer than 500 characters", "501")),
    Case("filled-prompt-too-long", catalog(csv=HEADER + f"sku-1,a.png,{'t' * 490}\n"),
         ("catalog.csv row 2 (id sku-1): prompt is longer than 500 characters",)),
    Case("empty-image", catalog(csv=HEADER + "sku-1,,A mug\n"), ("catalog.csv row 2 (id sku-1): image is empty",)),
    Case("unknown-scheme-image", catalog(csv=HEADER + "sku-1,foo://example.com/a.png,A mug\n"),
         ("catalog.csv row 2 (id sku-1): image 'foo://example.com/a.png': unknown URL scheme 'foo://'",)),
    Case("backend-not-installed", catalog(csv=HEADER + "sku-1,gs://cat/a.png,A mug\n"),
         ("catalog.csv row 2 (id sku-1): image 'gs://cat/a.png': gs:// needs the gcsfs backend: "
          "pip install 'lightx-pipeline[gcs]'",)),
    Case("data-uri-image", catalog(csv=HEADER + "sku-1,data:image/png;base64,A mug\n"),
         ("catalog.csv row 2 (id sku-1): image must be a local path, an http(s):// URL or a storage URL",)),
    Case("file-url-image", catalog(csv=HEADER + "sku-1,file:///nonexistent/a.png,A mug\n"),
         ("catalog.csv row 2 (id sku-1): image 'file:///nonexistent/a.png' not found",)),
    Case("filename-escapes", catalog(config=CONFIG + 'output:\n  filename: "{title}.jpg"\n',
                                     csv=HEADER + "sku-1,a.png,../../etc/mug\n"),
         ("catalog.csv row 2 (id sku-1): output file name '../../etc/mug.jpg' must stay inside output.dir",)),
    Case("filename-collision", catalog(config=CONFIG + 'output:\n  filename: "{title}.jpg"\n',
                                       csv=HEADER + "sku-1,a.png,Mug\nsku-2,a.png,mug\n"),
         ("catalog.csv row 3 (id sku-2): output file name 'mug.jpg' is also used by row 2",)),
    Case("too-many-cells", catalog(csv=HEADER + "sku-1,a.png,A mug,oops\n"),
         ("catalog.csv row 2 (id sku-1): has 4 cells but the header names 3 columns",)),
    Case("yaml-item-boolean", _yaml_catalog("items:\n  - {id: sku-1, image: a.png, title: yes}\n"),
         ("items.yaml item 1 (id sku-1): title must be text or a number", "True")),
    Case("yaml-item-missing-image", _yaml_catalog("items:\n  - {id: sku-1, title: A mug}\n"),
         ("items.yaml item 1 (id sku-1): image is required",)),
    Case("yaml-item-not-mapping", _yaml_catalog("items:\n  - sku-1\n"),
         ("items.yaml item 1: must be a mapping of column: value",)),
]


def problems_for(config: Path, env: dict[str, str] | None = None) -> list[str]:
    """What ``pipeline validate`` would print: a ConfigError's lines, or every invalid row's lines."""
    try:
        _, manifest, _ = validate(config, env=env or {})
    except ConfigError as exc:
        return exc.problems
    return problem_lines(manifest)


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.name)
def test_bad_input_names_the_culprit(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # file names print relative to the working directory
    lines = problems_for(write_case(case, tmp_path), case.env)
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
    lines = problems_for(write_case(Case("x", catalog(config=config), ()), tmp_path))
    assert len(lines) == 3, lines
    csv = HEADER + "sku 1,a.png,A\nsku-2,missing.png,B\nsku-3,a.png,\nsku-3,a.png,C\n"
    lines = problems_for(write_case(Case("x", catalog(config="manifest: catalog.csv\nprompt: '{title}'\n", csv=csv),
                                         ()), tmp_path))
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
    lines = problems_for(write_case(Case("x", files, ()), tmp_path))
    config_lines = [line for line in lines if line.startswith("catalog.yaml: ")]
    assert 1 <= len(config_lines) <= 2 and lines[:len(config_lines)] == config_lines, lines
    assert [line.split(":")[0] for line in lines[len(config_lines):]] == [
        "catalog.csv row 2 (id sku-1)", "catalog.csv row 4 (id sku-2)", "catalog.csv row 5 (id sku-4)"], lines


@pytest.mark.parametrize("config", ["manifest: 5\nlimits: 3\n", "limits: 3\n", "manifest: catalog.txt\n"])
def test_a_config_that_cannot_name_its_manifest_reports_only_itself(config: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = problems_for(write_case(Case("x", catalog(config=config, csv=HEADER + "sku-1,gone.png,A\n"), ()),
                                    tmp_path))
    assert lines and all(line.startswith("catalog.yaml: ") for line in lines), lines


def test_a_missing_manifest_is_reported_with_the_config_problems(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = without(catalog(config=CONFIG + "poll:\n  interval_s: -1\n"), "catalog.csv")
    lines = problems_for(write_case(Case("x", files, ()), tmp_path))
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
