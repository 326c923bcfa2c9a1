"""YAML config -> frozen dataclasses, validated against schemas/config.schema.json.

    >>> cfg = load_config("configs/catalog.yaml")
    >>> cfg.manifest_path, cfg.limits.concurrency
    (PosixPath('/.../configs/catalog.csv'), 8)

The rules live in the JSON Schemas; this module reads them, turns every violation into one line naming
file and field, and raises them together as one ConfigError.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.inputs.files import display_path, load_yaml, read_text
from pipeline.inputs.schema import schema_checker, schema_problems
# The config's dataclasses, templates and file readers live in their own modules; they are named
# here too, where callers have always found them.
from pipeline.inputs.settings import (BASE_URL_ENV, CHECKPOINT_NAME, DEFAULT_BASE_URL, SECTIONS, SITE_DIR,  # noqa: F401
                                      ApiSettings, BudgetSettings, ImageSettings, Limits, OutputSettings,
                                      PollSettings, RetrySettings, RunConfig, StateSettings, StorageSettings,
                                      StoreSettings)
from pipeline.inputs.template import Template, output_name_problem  # noqa: F401
from pipeline.inputs.variants import config_problems, parse_variants, relabel
from pipeline.store.remote import is_remote, local_path, options_problems, scheme_problem


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> RunConfig:
    """Read, validate and resolve a YAML config; raise one ConfigError listing every problem."""
    cfg, problems = check_config(path, env=env)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    return cfg


def check_config(path: str | Path, *, env: Mapping[str, str] | None = None
                 ) -> tuple[RunConfig | None, list[str]]:
    """``(config, [])`` for a valid config, else ``(stand-in or None, problems)``.

    The stand-in has every setting at its default except what reading the manifest needs
    (``manifest``, and ``prompt`` and ``output.filename`` where those are valid), so the manifest's
    problems can be reported with the config's; it is None when the manifest cannot be found.
    A file that cannot be read as a YAML mapping still raises ConfigError at once.
    """
    env = os.environ if env is None else env
    shown = display_path(path)
    config_path = Path(os.path.abspath(path))
    data = load_yaml(read_text(config_path, shown, "config file"), shown)
    if data is None:
        raise ConfigError(f"{shown}: the config is empty; it needs at least `manifest: items.csv`")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: the config must be a mapping of settings, not a {_kind(data)}")

    key_env = data["api"].get("key_env") if isinstance(data.get("api"), dict) else None
    if key_env is None or schema_checker("config", "/properties/api/properties/key_env").errors(key_env):
        key_env = ApiSettings.key_env  # never echo an invalid value: it may be the key itself
    context = {"key_env": key_env}
    problems = [f"{shown}: {relabel(line, data)}" for line in schema_problems(schema_checker("config"), data, context)]
    base_url = env.get(BASE_URL_ENV) or None
    if base_url is not None:
        sub = schema_checker("config", "/properties/api/properties/base_url")
        problems += schema_problems(sub, base_url, root=BASE_URL_ENV)
    problems += [f"{shown}: {line}" for line in _template_problems(data)]
    problems += [f"{shown}: {line}" for line in config_problems(data)]
    problems += [f"{shown}: {line}" for line in _storage_problems(data)]
    if problems:
        return _manifest_reader(config_path, data), problems

    base = config_path.parent
    sections = {name: _section(cls, data.get(name) or {}) for name, cls in SECTIONS.items()}
    if sections["state"].dir is not None:
        sections["state"] = StateSettings(dir=_local(base, str(sections["state"].dir)))
    output_dir = str((data.get("output") or {}).get("dir") or OutputSettings.dir)  # as written: Path() would
    # turn s3://cat/out into s3:/cat/out
    output_url = output_dir.rstrip("/") if is_remote(output_dir) else None
    sections["output"] = dataclasses.replace(sections["output"], dir=sections["state"].dir / SITE_DIR
                                             if output_url else _local(base, output_dir))
    sections["api"] = dataclasses.replace(
        sections["api"], base_url=(base_url or sections["api"].base_url).rstrip("/"))
    return RunConfig(config_path=config_path, manifest_path=_manifest_location(base, data["manifest"]),
                     output_url=output_url, prompt=data.get("prompt"), variants=parse_variants(data.get("variants")),
                     columns=dict(data.get("columns") or {}), **sections), []


def _local(base: Path, text: str) -> Path:
    """A local path (or file:// URL) from the config, relative to the config's directory."""
    return Path(os.path.normpath(base / local_path(text)))


def _manifest_location(base: Path, text: str) -> Path | str:
    return text if is_remote(text) else _local(base, text)


def _storage_problems(data: dict) -> list[str]:
    """Storage URLs the config names: a known scheme with its backend installed; state.dir local and
    given when output.dir is a URL; no credentials in storage.options."""
    problems = []
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    for where, value in (("manifest", data.get("manifest")), ("output.dir", output.get("dir")),
                         ("state.dir", state.get("dir"))):
        if isinstance(value, str) and is_remote(value):
            if where == "state.dir":
                problems.append(f"state.dir: {value!r} must be a local directory: the checkpoint is SQLite and "
                                f"the run lock a file lock, and neither works on an object store")
            elif problem := scheme_problem(value):
                problems.append(f"{where}: {problem}")
    out_dir = output.get("dir")
    if isinstance(out_dir, str) and is_remote(out_dir) and state.get("dir") is None:
        problems.append(f"output.dir is a storage URL ({out_dir}), so state.dir is required: the checkpoint "
                        f"and run lock must stay on a local filesystem (SQLite does not belong on an object "
                        f"store); add e.g. `state: {{dir: .pipeline-state}}`, on a disk that outlives the run")
    storage = data.get("storage") if isinstance(data.get("storage"), dict) else {}
    if isinstance(storage.get("options"), dict):
        problems += options_problems(storage["options"])
    return problems


def _manifest_reader(config_path: Path, data: dict) -> RunConfig | None:
    """The stand-in config of `check_config`: enough of an invalid config to read its manifest."""
    manifest = data.get("manifest")
    if manifest is None or schema_checker("config", "/properties/manifest").errors(manifest):
        return None
    prompt = data.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or _template_problems({"prompt": prompt})):
        prompt = "-"  # a plain default: rows are checked for all but what the broken template decides
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    filename = output.get("filename", OutputSettings.filename)
    if schema_checker("config", "/properties/output/properties/filename").errors(filename) or \
            _template_problems({"output": {"filename": filename}}):
        filename = OutputSettings.filename
    variants = data.get("variants")
    if variants is not None and (schema_checker("config", "/properties/variants").errors(variants)
                                 or config_problems(data)):
        return None  # how the manifest is read depends on them: its columns, prompts and file names
    storage = data.get("storage") if isinstance(data.get("storage"), dict) else {}
    options = storage.get("options") if isinstance(storage.get("options"), dict) else {}
    if is_remote(manifest) and (scheme_problem(manifest) or options_problems(options)):
        return None
    store = data.get("store") if isinstance(data.get("store"), dict) else {}
    if schema_checker("config", "/properties/store").errors(store):
        store = {}
    columns = data.get("columns") if isinstance(data.get("columns"), dict) else {}
    if schema_checker("config", "/properties/columns").errors(columns):
        columns = {}
    return RunConfig(config_path=config_path, manifest_path=_manifest_location(config_path.parent, manifest),
                     storage=StorageSettings(options=options), output=OutputSettings(filename=filename),
                     prompt=prompt, variants=parse_variants(variants), store=_section(StoreSettings, store),
                     columns=dict(columns))


def api_key(cfg: RunConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The API key from the environment variable named by ``api.key_env``; None when unset or empty."""
    env = os.environ if env is None else env
    return env.get(cfg.api.key_env) or None


def _section(cls: type, values: Mapping[str, Any]) -> Any:
    """Build one settings dataclass, turning JSON numbers into the field's Python type."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if value is not None and "float" in str(f.type):
            value = float(value)
        elif value is not None and "int" in str(f.type):
            value = int(value)
        elif value is not None and "Path" in str(f.type):
            value = Path(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _template_problems(data: dict) -> list[str]:
    """Problems the schema cannot see: template syntax, and a file name that escapes output.dir."""
    problems = []
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    for where, text in (("prompt", data.get("prompt")), ("output.filename", output.get("filename"))):
        if not isinstance(text, str):
            continue
        try:
            template = Template.parse(text)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        sample = template.fill(dict.fromkeys(template.fields, "x"))
        if where == "output.filename" and (problem := output_name_problem(sample)):
            problems.append(f"{where}: {text!r} {problem}")
        if where == "prompt":
            checker = schema_checker("manifest", "/$defs/prompt")
            # A template's placeholders may fill an empty-looking prompt; only its length is final.
            problems += schema_problems(checker, template.fill(dict.fromkeys(template.fields, "")),
                                        root="prompt", keywords=None if not template.fields else {"maxLength"})
    return problems


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)
