"""load_config(): defaults, path resolution, the environment, and the schema kept honest."""
from __future__ import annotations

import dataclasses
import json
import string
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import yaml
from jsonschema import Draft202012Validator

from pipeline.inputs.config import (DEFAULT_BASE_URL, SECTIONS, RunConfig, Template, api_key, load_config,
                             output_name_problem)
from pipeline.inputs.schema import compile_fast, load_schema, schema_checker
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "run.yaml"
    path.parent.mkdir()
    path.write_text("manifest: ../data/items.csv\n")
    return path


def test_defaults_fill_everything_but_the_manifest(config_file: Path) -> None:
    cfg = load_config(config_file, env={})
    assert cfg == RunConfig(config_path=config_file, manifest_path=config_file.parent.parent / "data" / "items.csv",
                            output=dataclasses.replace(RunConfig.__dataclass_fields__["output"].default_factory(),
                                                       dir=config_file.parent / "outputs"))
    assert cfg.api.base_url == DEFAULT_BASE_URL
    assert cfg.state_dir == config_file.parent / "outputs" / ".pipeline"


def test_paths_are_absolute_and_relative_to_the_config_file(config_file: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text("manifest: items.yaml\noutput:\n  dir: ../out/./run\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("conf/run.yaml", env={})
    assert cfg.config_path == config_file
    assert cfg.manifest_path == config_file.parent / "items.yaml"
    assert cfg.output.dir == tmp_path / "out" / "run"
    assert all(p.is_absolute() for p in (cfg.config_path, cfg.manifest_path, cfg.output.dir))


def test_every_setting_is_read(config_file: Path) -> None:
    config_file.write_text("""\
manifest: m.csv
prompt: "{title} on marble"
output: {dir: o, filename: "{category}/{id}.jpeg"}
limits: {concurrency: 3, requests_per_second: 2}
poll: {interval_s: 1, max_attempts: 9}
api: {base_url: "http://localhost:8080/api/", key_env: MY_KEY, timeout_s: 5}
retries: {failed_orders: 0, transient: 1, backoff_base_s: 0.1, backoff_max_s: 2, budget_s: 60}
budget: {max_credits: 0, confirm_over: 0}
images: {max_upload_bytes: 1000, remote_timeout_s: 2.5, remote_connect_timeout_s: 1.5, remote_stall_timeout_s: 2,
         remote_max_bytes: 2000}
""")
    cfg = load_config(config_file, env={})
    assert cfg.prompt == "{title} on marble"
    assert cfg.output.filename == "{category}/{id}.jpeg"
    assert cfg.limits.requests_per_second == 2.0 and isinstance(cfg.limits.requests_per_second, float)
    assert cfg.poll.interval_s == 1.0 and isinstance(cfg.poll.interval_s, float)
    assert cfg.poll.max_attempts == 9
    assert cfg.api.base_url == "http://localhost:8080/api"
    assert (cfg.api.key_env, cfg.api.timeout_s) == ("MY_KEY", 5.0)
    assert dataclasses.astuple(cfg.retries) == (0, 1, 0.1, 2.0, 60.0)
    assert dataclasses.astuple(cfg.budget) == (0, 0)
    assert dataclasses.astuple(cfg.images) == (1000, 2.5, 1.5, 2, 2000)


def test_optional_settings_accept_null(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\nprompt:\nlimits: {requests_per_second: null}\n"
                           "poll: {max_attempts: ~}\nbudget: {max_credits: null}\n")
    cfg = load_config(config_file, env={})
    assert (cfg.prompt, cfg.limits.requests_per_second, cfg.poll.max_attempts, cfg.budget.max_credits) == (
        None, None, None, None)


def test_base_url_comes_from_the_environment_first(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\napi: {base_url: 'https://example.com/api'}\n")
    assert load_config(config_file, env={}).api.base_url == "https://example.com/api"
    env = {"LIGHTX_BASE_URL": "http://127.0.0.1:9999/external/api/"}
    assert load_config(config_file, env=env).api.base_url == "http://127.0.0.1:9999/external/api"
    assert load_config(config_file, env={"LIGHTX_BASE_URL": ""}).api.base_url == "https://example.com/api"


def test_api_key_is_read_from_the_named_variable(config_file: Path) -> None:
    cfg = load_config(config_file, env={})
    assert api_key(cfg, {"LIGHTX_API_KEY": "k1"}) == "k1"
    assert api_key(cfg, {"LIGHTX_API_KEY": ""}) is None
    assert api_key(cfg, {}) is None
    config_file.write_text("manifest: m.csv\napi: {key_env: SHOP_LIGHTX_KEY}\n")
    cfg = load_config(config_file, env={})
    assert api_key(cfg, {"LIGHTX_API_KEY": "k1", "SHOP_LIGHTX_KEY": "k2"}) == "k2"


def test_api_key_defaults_to_the_process_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTX_API_KEY", "from-env")
    assert api_key(load_config(config_file)) == "from-env"


def test_integral_floats_are_integers(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\nlimits: {concurrency: 4.0}\n")
    assert load_config(config_file, env={}).limits.concurrency == 4


def test_booleans_are_not_numbers(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\nlimits: {concurrency: true}\n")
    with pytest.raises(ConfigError, match="limits.concurrency: True is not of type 'integer'"):
        load_config(config_file, env={})


def test_yaml_error_names_the_line(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\nlimits:\n  concurrency: 4\n bad indent: 1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: line 4, column 2: YAML syntax error"):
        load_config(config_file, env={})


def test_yaml_error_explains_an_unquoted_template(config_file: Path) -> None:
    config_file.write_text("manifest: m.csv\nprompt: {title} on marble\n")
    with pytest.raises(ConfigError, match=r"line 2, column \d+: .* a value starting with \{ must be quoted"):
        load_config(config_file, env={})


def test_yaml_tags_are_not_executed(config_file: Path) -> None:
    config_file.write_text("manifest: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(config_file, env={})


def test_one_error_lists_every_problem(config_file: Path) -> None:
    config_file.write_text("limits: {concurrency: 0, concurency: 1}\npoll: {interval_s: 0}\napi_key: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={"LIGHTX_BASE_URL": "nope"})
    assert len(info.value.problems) == 6, info.value.problems
    assert str(info.value) == "\n".join(info.value.problems)


@pytest.mark.parametrize("text, fields, filled", [
    ("{title} on {scene}", ["title", "scene"], "T on S"),
    ("{title}, {title}!", ["title"], "T, T!"),
    ("plain prompt", [], "plain prompt"),
    ("{{literal}} {title}", ["title"], "{literal} T"),
    ("{size.cm} and {a[0]}", ["size.cm", "a[0]"], "10 and A"),
])
def test_template_fills_columns_by_name(text: str, fields: list[str], filled: str) -> None:
    template = Template.parse(text)
    assert template.fields == fields
    assert template.fill({"title": "T", "scene": "S", "size.cm": "10", "a[0]": "A"}) == filled


@pytest.mark.parametrize("text, message", [
    ("{title", "expected '}'"), ("title}", "Single '}'"), ("{}", "must name a column"),
    ("{0}", "must name a column"), ("{title!r}", "write just {title}"), ("{title:>9}", "write just {title}"),
])
def test_template_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Template.parse(text)


def test_template_missing_column_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Template.parse("{title}").fill({})


@pytest.mark.parametrize("name, ok", [
    ("a.jpg", True), ("shoes/a.jpg", True), ("..a.jpg", True), ("a/../b.jpg", False), ("../a.jpg", False),
    ("/a.jpg", False), ("a//b.jpg", False), ("./a.jpg", False), ("a\\b.jpg", False), ("", False), ("..", False),
])
def test_output_name_must_stay_inside_output_dir(name: str, ok: bool) -> None:
    assert (output_name_problem(name) is None) is ok


# -- the schemas, kept honest ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["config", "manifest"])
def test_schema_is_valid_2020_12_and_packaged(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(files("pipeline.schemas").joinpath(f"{name}.schema.json").read_text()) == schema
    assert json.loads((REPO / "schemas" / f"{name}.schema.json").read_text()) == schema


def _objects(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    found = [(path, schema)] if schema.get("type") == "object" else []
    for key, sub in schema.get("properties", {}).items():
        found += _objects(sub, f"{path}.{key}".lstrip("."))
    return found


def test_config_schema_closes_every_object_and_documents_every_property() -> None:
    for path, obj in _objects(load_schema("config")):
        if path == "storage.options":  # the backend's own keyword arguments, passed to fsspec as they are
            assert obj["additionalProperties"] is True and "properties" not in obj
            continue
        assert obj.get("additionalProperties") is False, path
        for key, prop in obj["properties"].items():
            assert len(prop.get("description", "")) > 20, f"{path}.{key}"
            assert "default" in prop or key == "manifest", f"{path}.{key}"


def test_config_schema_matches_the_dataclasses() -> None:
    props = load_schema("config")["properties"]
    assert set(props) == {"manifest", "prompt", "variants", "columns", *SECTIONS}
    assert set(RunConfig.__dataclass_fields__) == {"config_path", "manifest_path", "prompt", "variants", "shard", "columns",
                                                   "output_url", *SECTIONS}
    for section, cls in SECTIONS.items():
        fields = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                  for f in dataclasses.fields(cls)}
        schema = props[section]["properties"]
        assert set(schema) == set(fields), section
        for key, default in fields.items():
            expected = str(default) if isinstance(default, Path) else default
            assert schema[key]["default"] == expected, f"{section}.{key}"
    assert props["prompt"]["default"] is None


def test_schema_defaults_validate() -> None:
    schema = load_schema("config")
    defaults = {section: {k: v["default"] for k, v in props["properties"].items()}
                for section, props in schema["properties"].items() if "properties" in props}
    assert list(Draft202012Validator(schema).iter_errors({"manifest": "m.csv", **defaults})) == []


def test_manifest_schema_closes_the_document() -> None:
    schema = load_schema("manifest")
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["item"]["additionalProperties"] is False


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "configs" / "catalog.yaml", env={})
    assert cfg.manifest_path == REPO / "configs" / "catalog.csv"


# -- the fast pre-check must agree with jsonschema ---------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(string.ascii_letters + string.digits + "._- /:\n", max_size=140)
           | st.sampled_from(["", " ", "x" * 128, "x" * 129, "p" * 500, "p" * 501, "http://h/a.png", "HTTPS://h",
                              "http://", "ftp://h/a.png", "file:///a.png", "data:x", "C:/a.png", "./a:b.png"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["id", "image", "prompt", "title"]) | st.text(max_size=4), inner, max_size=5), max_leaves=10)


@pytest.mark.parametrize("pointer", ["/$defs/item", "/$defs/row", "/$defs/cell", "/$defs/id", "/$defs/image",
                                     "/$defs/prompt"])
@settings(max_examples=120, deadline=None)
@given(value=VALUES)
def test_fast_check_agrees_with_jsonschema(pointer: str, value: object) -> None:
    checker = schema_checker("manifest", pointer)
    assert checker.fast is not None
    assert checker.fast(value) == checker.validator.is_valid(value)


def test_unknown_keywords_fall_back_to_jsonschema() -> None:
    assert compile_fast({"multipleOf": 2}, {}) is None
    assert compile_fast({"anyOf": [{"type": "string"}]}, {}) is None
    assert compile_fast({"properties": {"a": {"const": 1}}}, {}) is None
    assert compile_fast({"enum": [[1, 2]]}, {}) is None  # an enum of lists: jsonschema's equality


def _paths(value: object, at: tuple = ()) -> list[tuple]:
    """Every place in a config: each key of each mapping, each list entry."""
    places = [at]
    if isinstance(value, dict):
        places += [p for k, v in value.items() for p in _paths(v, (*at, k))]
    elif isinstance(value, list):
        places += [p for n, v in enumerate(value) for p in _paths(v, (*at, n))]
    return places


NEAR = (st.integers(-2, 6) | st.floats(-1.5, 2.5) | st.sampled_from([0, 1, 1.0, 0.0, True, False, None, "", "x",
        "{id}.png", "{id}.jpg", "all", "auto", "off", [], {}, [1], {"x": 1}, "https://h", 10**12]) | VALUES)


def _mutated(value: object, data: st.DataObject) -> object:
    """The config with one to three places replaced by a value near the edge of what is allowed, a key
    dropped, or an unknown key added."""
    import copy
    value = copy.deepcopy(value)
    for _ in range(data.draw(st.integers(1, 3))):
        place = data.draw(st.sampled_from(_paths(value)))
        if not place:
            continue
        *parent_at, key = place
        parent = value
        for part in parent_at:
            parent = parent[part]
        how = data.draw(st.integers(0, 5))
        if how == 0 and isinstance(parent, dict):
            del parent[key]
        elif how == 1 and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["concurency", "x", "limits", "dir"]))] = copy.deepcopy(data.draw(NEAR))
        else:
            parent[key] = copy.deepcopy(data.draw(NEAR))  # sampled_from hands out the same {} each time
    return value


CONFIGS = [yaml.safe_load((REPO / "configs" / name).read_text()) for name in ("catalog.yaml", "variants.yaml")] + [
    {"manifest": "c.csv", "limits": {"concurrency": 8, "requests_per_second": 2.5, "transfers": 4},
     "poll": {"interval_s": 1, "max_attempts": 600}, "retries": {"failed_orders": 0, "budget_s": 900.5},
     "columns": {"id": "sku", "image": "main"}, "store": {"format": "shopify", "images": "all"},
     "output": {"dir": "out", "filename": "{id}.jpg"}, "qa": {"min_fidelity": 0.5, "max_rebuys": 1},
     "budget": {"max_credits": 10, "confirm_over": 5}, "images": {"remote_timeout_s": 5},
     "api": {"key_env": "K", "base_url": "https://h/api", "timeout_s": 30}}]


@pytest.mark.parametrize("config", range(len(CONFIGS)))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_configs_fast_check_never_passes_what_jsonschema_refuses(config: int, data: st.DataObject) -> None:
    """A config that passes the quick check is one jsonschema accepts (what it refuses is worded by
    jsonschema, imported only then); and the configs people write do pass it."""
    checker = schema_checker("config")
    assert checker.fast is not None and checker.fast(CONFIGS[config]) and checker.validator.is_valid(CONFIGS[config])
    value = _mutated(CONFIGS[config], data)
    if checker.fast(value):
        assert checker.validator.is_valid(value), value


def test_a_valid_catalog_is_checked_without_importing_jsonschema(tmp_path: Path) -> None:
    code = ("import sys; from pipeline.cli import main; code = main(['validate', sys.argv[1]]); "
            "print(code, 'jsonschema' in sys.modules)")
    run = lambda config: subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True,
                                        text=True, cwd=tmp_path).stdout.split()[-2:]
    assert run(REPO / "configs" / "catalog.yaml") == ["0", "False"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"manifest: {REPO / 'configs' / 'catalog.csv'}\nlimits:\n  concurrency: 0\n")
    assert run(bad) == ["2", "True"]  # a problem is worded by jsonschema


NEAR_VALID = st.fixed_dictionaries(
    {"id": SCALARS, "image": SCALARS},
    optional={"prompt": SCALARS, "title": SCALARS, "price": SCALARS, "": SCALARS})
WELL_FORMED = st.fixed_dictionaries(
    {"id": st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True),
     "image": st.sampled_from(["a.png", "dir/b.jpg", "http://h/a.png", "HTTPS://h/x", "./a:b.png"]),
     "prompt": st.text(min_size=1, max_size=500).filter(str.strip)})


@pytest.mark.parametrize("pointer", ["/$defs/item", "/$defs/row"])
@settings(max_examples=300, deadline=None)
@given(value=NEAR_VALID | WELL_FORMED)
def test_fast_check_agrees_with_jsonschema_on_rows_shaped_like_a_manifest(pointer: str, value: dict) -> None:
    """Rows close to valid reach every branch of the fast check, valid answers included."""
    checker = schema_checker("manifest", pointer)
    assert checker.fast(value) == checker.validator.is_valid(value)


@settings(max_examples=50, deadline=None)
@given(value=WELL_FORMED)
def test_well_formed_rows_take_the_fast_path(value: dict) -> None:
    assert schema_checker("manifest", "/$defs/item").fast(value) is True
