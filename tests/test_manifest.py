"""load_manifest() and check_images(): formats, prompt rules, row numbers, and the round trip."""
from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.inputs import local_images
from pipeline.inputs.config import OutputSettings, RunConfig
from pipeline.errors import ConfigError
from pipeline.inputs.manifest import Item, check_images, load_manifest


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 120, 200)).save(path)
    return path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # file names in messages print relative to the working directory


@pytest.fixture
def mug_folder(tmp_path: Path) -> Path:
    """The test's folder, holding images/mug.png (conftest's catalog_dir is another thing)."""
    _png(tmp_path / "images" / "mug.png")
    return tmp_path


def config(manifest: Path, prompt: str | None = None, filename: str = "{id}.jpg") -> RunConfig:
    return RunConfig(config_path=manifest.parent / "run.yaml", manifest_path=manifest, prompt=prompt,
                     output=OutputSettings(dir=manifest.parent / "out", filename=filename))


def load(path: Path, text: str | bytes, prompt: str | None = None, filename: str = "{id}.jpg"):
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return load_manifest(config(path, prompt, filename))


def test_csv_item_fields(mug_folder: Path) -> None:
    m = load(mug_folder / "items.csv", "id,image,prompt,title\nmug-1,images/mug.png,a mug,Mug\n"
                                       "mug-2,https://cdn.example.com/m.jpg?x=1,a mug,Mug\n")
    assert m.items == [
        Item("mug-1", "images/mug.png", "a mug", 2, mug_folder / "images" / "mug.png", None, "mug-1.jpg",
             {"title": "Mug"}),
        Item("mug-2", "https://cdn.example.com/m.jpg?x=1", "a mug", 3, None, "https://cdn.example.com/m.jpg?x=1",
             "mug-2.jpg", {"title": "Mug"}),
    ]
    assert m.items[0].extra == {"title": "Mug"}
    assert m.columns == ["id", "image", "prompt", "title"]
    assert m.invalid == []
    # A CSV's other cells: a tuple per row over one layout (a dict each cost 72 bytes more a row).
    from pipeline.inputs.items import Cells
    assert all(isinstance(i.extra, Cells) for i in m.items) and m.items[0].extra._at is m.items[1].extra._at


def test_bom_crlf_and_quoted_fields(mug_folder: Path) -> None:
    text = ('\ufeffid,image,prompt\r\n'
            'a,images/mug.png,"a mug, on marble"\r\n'
            'b,images/mug.png,"line one\r\nline ""two"""\r\n'
            '\r\n'
            'c,images/mug.png,plain\r\n')
    m = load(mug_folder / "items.csv", text.encode("utf-8"))
    assert [(i.id, i.prompt, i.row) for i in m.items] == [
        ("a", "a mug, on marble", 2), ("b", 'line one\r\nline "two"', 3), ("c", "plain", 5)]
    assert m.columns == ["id", "image", "prompt"]


def test_rows_count_like_a_spreadsheet(mug_folder: Path) -> None:
    text = 'id,image,prompt\n\na,images/mug.png,"two\nlines"\n,,\nb b,images/mug.png,x\n'
    m = load(mug_folder / "items.csv", text)
    assert [(i.id, i.row) for i in m.items] == [("a", 3)]
    assert [(bad.id, bad.row) for bad in m.invalid] == [("b b", 5)]
    assert m.invalid[0].problems[0].startswith("items.csv row 5 (id 'b b'): id may contain only")


def test_id_and_image_cells_are_stripped(mug_folder: Path) -> None:
    m = load(mug_folder / "items.csv", "id , image,prompt\n sku-1 , images/mug.png , keep  spaces \n")
    assert (m.items[0].id, m.items[0].image, m.items[0].prompt) == ("sku-1", "images/mug.png", " keep  spaces ")


def test_short_rows_and_trailing_commas(mug_folder: Path) -> None:
    m = load(mug_folder / "items.csv", "id,image,prompt,note,\na,images/mug.png,x\nb,images/mug.png,y,n,,\n",
             prompt=None)
    assert [(i.id, i.extra) for i in m.items] == [("a", {"note": ""}), ("b", {"note": "n"})]


def test_every_problem_of_a_row_is_listed(mug_folder: Path) -> None:
    m = load(mug_folder / "items.csv", f"id,image,prompt\nbad id,data:x/y.png,{'p' * 501}\n")
    assert m.items == []
    [bad] = m.invalid
    assert (bad.id, bad.row) == ("bad id", 2)
    assert [p.split(": ", 1)[1].split(" (got")[0] for p in bad.problems] == [
        "id may contain only A-Z a-z 0-9 . _ -",
        "image must be a local path, an http(s):// URL or a storage URL such as s3://bucket/key",
        "prompt is longer than 500 characters, LightX's limit"]


def test_prompt_precedence(mug_folder: Path) -> None:
    text = "id,image,prompt,title\na,images/mug.png,own prompt,Mug\nb,images/mug.png,,Cup\n"
    path = mug_folder / "items.csv"
    # no config prompt: the cell is the prompt (and an empty one is a problem)
    m = load(path, text)
    assert [i.prompt for i in m.items] == ["own prompt"]
    assert m.invalid[0].problems == ["items.csv row 3 (id b): prompt is empty"]
    # a config template without {prompt} is the default: a non-empty cell wins
    m = load(path, text, prompt="{title} on marble")
    assert [i.prompt for i in m.items] == ["own prompt", "Cup on marble"]
    # a config template using {prompt} always applies
    m = load(path, text, prompt="{prompt} {title}, studio light")
    assert [i.prompt for i in m.items] == ["own prompt Mug, studio light", " Cup, studio light"]
    # a plain config prompt needs no prompt column
    m = load(path, "id,image\na,images/mug.png\n", prompt="on marble")
    assert [i.prompt for i in m.items] == ["on marble"]


def test_prompt_placeholder_without_a_column_is_file_level(mug_folder: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(mug_folder / "items.csv", "id,image\na,images/mug.png\n", prompt="{prompt}, {colour}")
    assert info.value.problems == [
        "run.yaml: prompt uses {prompt}, but items.csv has no 'prompt' column (columns: id, image)",
        "run.yaml: prompt uses {colour}, but items.csv has no 'colour' column (columns: id, image)"]


def test_output_filename_template(mug_folder: Path) -> None:
    m = load(mug_folder / "items.csv", "id,image,prompt,cat\na,images/mug.png,p,mugs\nb,images/mug.png,p,\n",
             filename="{cat}/{id}.jpg")
    assert [i.output_name for i in m.items] == ["mugs/a.jpg"]
    assert m.invalid[0].problems == [
        "items.csv row 3 (id b): output file name '/b.jpg' is an absolute path; it must be relative to output.dir"]


def test_yaml_manifest(mug_folder: Path) -> None:
    text = """\
items:
  - id: mug-1
    image: images/mug.png
    title: Mug
    price: 9.5
  - {id: 42, image: images/mug.png, title: 7, price: ~}
"""
    m = load(mug_folder / "items.yml", text, prompt="{title} for {price}")
    assert [(i.id, i.prompt, i.row, i.extra) for i in m.items] == [
        ("mug-1", "Mug for 9.5", 1, {"title": "Mug", "price": "9.5"}),
        ("42", "7 for ", 2, {"title": "7", "price": ""})]
    assert m.columns == ["id", "image", "title", "price"]


def test_rows_with_the_same_fields_share_one_layout_and_others_stay_dicts(mug_folder: Path) -> None:
    """A dict row's cells are held as a tuple over a layout its rows share; rows whose fields keep
    changing (past MAX_LAYOUTS of them) are held as dicts. Either reads as the row's dict."""
    import pickle
    from pipeline.inputs import build
    from pipeline.inputs.items import Cells
    same = [f"  - {{id: s{k}, image: images/mug.png, title: T{k}, colour: c{k % 3}}}" for k in range(5)]
    varied = [f"  - {{id: v{k}, image: images/mug.png, title: V{k}, f{k}: x}}" for k in range(build.MAX_LAYOUTS + 3)]
    m = load(mug_folder / "items.yml", "items:\n" + "\n".join(same + varied) + "\n", prompt="{title}")
    by_id = {i.id: i for i in m.items}
    shared = [by_id[f"s{k}"].extra for k in range(5)]
    assert all(isinstance(cells, Cells) for cells in shared)
    assert len({id(cells._at) for cells in shared}) == 1  # one layout for the five rows
    assert [{**cells} for cells in shared[:2]] == [{"title": "T0", "colour": "c0"}, {"title": "T1", "colour": "c1"}]
    assert shared[1] == {"title": "T1", "colour": "c1"} and repr(shared[1]) == repr({"title": "T1", "colour": "c1"})
    assert shared[1].get("price") is None and "colour" in shared[1] and len(shared[1]) == 2
    assert pickle.loads(pickle.dumps(by_id["s1"])).extra == {"title": "T1", "colour": "c1"}
    # Five rows of one layout, then one layout per varied row until the cap: the rest are dicts.
    assert [type(by_id[f"v{k}"].extra) for k in range(build.MAX_LAYOUTS - 2, build.MAX_LAYOUTS + 3)] == \
        [Cells] + [dict] * 4
    last = build.MAX_LAYOUTS + 2
    assert by_id[f"v{last}"].extra == {"title": f"V{last}", f"f{last}": "x"}


def test_yaml_item_missing_a_template_column(mug_folder: Path) -> None:
    text = "items:\n  - {id: a, image: images/mug.png, title: Mug}\n  - {id: b, image: images/mug.png}\n"
    m = load(mug_folder / "items.yaml", text, prompt="{title} on marble")
    assert [i.id for i in m.items] == ["a"]
    assert m.invalid[0].problems == ["items.yaml item 2 (id b): prompt uses {title}, which this item does not have"]


def test_yaml_duplicate_key_names_its_line(mug_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"items.yaml: line 3, column 5: YAML syntax error: duplicate key 'id'"):
        load(mug_folder / "items.yaml", "items:\n  - id: a\n    id: b\n    image: x.png\n", prompt="p")


def test_unknown_extension(mug_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"items.txt: unknown manifest type '.txt'; use .csv, .tsv, .xml, "
                                          r".parquet, .jsonl, .yaml or .yml"):
        load(mug_folder / "items.txt", "id\timage\n")


def test_image_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    _png(tmp_path / "data" / "img" / "a.png")
    (tmp_path / "data" / "items.csv").write_text(f"id,image,prompt\na,img/a.png,p\nb,{tmp_path}/data/img/a.png,p\n")
    m = load_manifest(RunConfig(config_path=tmp_path / "run.yaml", manifest_path=tmp_path / "data" / "items.csv"))
    assert [i.image_path for i in m.items] == [tmp_path / "data" / "img" / "a.png"] * 2


# -- check_images -----------------------------------------------------------------------------------

def test_check_images_reads_each_path_once(mug_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (mug_folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    rows = "".join(f"m{i},images/mug.png,p\n" for i in range(1000))
    rows += "b1,images/broken.jpg,p\nb2,images/broken.jpg,p\nn1,images/none.png,p\nu1,https://x.test/a.png,p\n"
    m = load(mug_folder / "items.csv", "id,image,prompt\n" + rows)
    opened, headers = [], []
    real_open, real_header = local_images.Image.open, local_images._head_and_tail
    monkeypatch.setattr(local_images.Image, "open", lambda path: opened.append(path) or real_open(path))
    monkeypatch.setattr(local_images, "_head_and_tail", lambda path: headers.append(path) or real_header(path))
    problems = check_images(m.items)
    assert len(headers) == 3  # each distinct path once; the plain PNG needs no more
    assert sorted(p.name for p in opened) == ["broken.jpg", "none.png"]  # Pillow words the problems
    assert set(problems) == {"b1", "b2", "n1"}
    assert problems["b1"].startswith("image 'images/broken.jpg' is not an image Pillow can read")
    assert problems["n1"].startswith("image 'images/none.png' not found")


def test_check_images_accepts_formats_that_upload_converts(mug_folder: Path) -> None:
    Image.new("RGB", (8, 8)).save(mug_folder / "images" / "a.webp")
    m = load(mug_folder / "items.csv", "id,image,prompt\na,images/a.webp,p\n")
    assert check_images(m.items) == {}


# -- the round trip -------------------------------------------------------------------------------

ID = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=128)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(list(',"\'\n\r\t{} ')),
               max_size=60)
PROMPT = TEXT.filter(lambda s: s.strip()).filter(lambda s: len(s) <= 500)
IMAGE = st.sampled_from(["images/mug.png", "a dir/b, c.jpg", "https://example.com/x.jpg?a=1,2", "ünï/çødé.png"])
ROW = st.fixed_dictionaries({"id": ID, "image": IMAGE, "prompt": PROMPT, "title": TEXT, "note": TEXT})
ROWS = st.lists(ROW, min_size=1, max_size=12, unique_by=lambda row: row["id"].casefold())


def _as_csv(rows: list[dict[str, str]], terminator: str) -> str:
    out = io.StringIO()
    # csv's writer leaves a lone "\r" unquoted unless it is part of the line terminator
    quoting = csv.QUOTE_MINIMAL if terminator == "\r\n" else csv.QUOTE_ALL
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator=terminator, quoting=quoting)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, form=st.sampled_from(["csv", "csv-crlf", "csv-bom", "yaml"]))
def test_any_valid_manifest_loads_back_to_the_same_items(rows: list[dict[str, str]], form: str,
                                                         tmp_path: Path) -> None:
    if form == "yaml":
        path, data = tmp_path / "items.yaml", yaml.safe_dump({"items": rows}, allow_unicode=True).encode()
    else:
        text = _as_csv(rows, "\r\n" if form == "csv-crlf" else "\n")
        path, data = tmp_path / "items.csv", ("\ufeff" if form == "csv-bom" else "") .encode() + text.encode()
    path.write_bytes(data)
    m = load_manifest(config(path))
    assert m.invalid == []
    assert [(i.id, i.image, i.prompt, i.extra) for i in m.items] == [
        (r["id"], r["image"], r["prompt"], {"title": r["title"], "note": r["note"]}) for r in rows]
    assert [i.row for i in m.items] == [n + (1 if form == "yaml" else 2) for n in range(len(rows))]
    assert [i.output_name for i in m.items] == [f"{r['id']}.jpg" for r in rows]
