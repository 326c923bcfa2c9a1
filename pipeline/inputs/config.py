"""YAML config -> frozen dataclasses, validated against schemas/config.schema.json.

    >>> cfg = load_config("configs/catalog.yaml")
    >>> cfg.manifest_path, cfg.limits.concurrency
    (PosixPath('/.../configs/catalog.csv'), 8)

The rules live in the JSON Schemas; this module reads them, turns every violation into one line naming
file and field, and raises them together as one ConfigError.
"""
from __future__ import annotations

import codecs
import dataclasses
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.inputs.schema import DEFAULT_KEY_ENV, schema_checker, schema_problems
from pipeline.inputs.variants import Variant, config_problems, parse_variants, relabel
from pipeline.store.remote import (Remote, describe, faults, is_missing_bucket, is_remote, local_path,
                                   options_problems, scheme_problem)

DEFAULT_BASE_URL = "https://api.lightxeditor.com/external/api"
BASE_URL_ENV = "LIGHTX_BASE_URL"


@dataclass(frozen=True)
class Limits:
    concurrency: int = 16            # orders at the API at once
    transfers: int | None = None     # items uploading, downloading or ready to submit; None: = concurrency
    requests_per_second: float | None = None

    @property
    def workers(self) -> int:
        """Items in flight at once: the orders plus the transfers beside them."""
        return self.concurrency + (self.transfers or self.concurrency)


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 3.0
    max_attempts: int | None = None  # None: use the maxRetriesAllowed the API returns


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = DEFAULT_BASE_URL
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    failed_orders: int = 2      # resubmits of an order that ended `failed` (free)
    transient: int = 8          # attempts per request on transient errors
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

CHECKPOINT_NAME = "checkpoint.sqlite"  # in each state directory


@dataclass(frozen=True)
class OutputSettings:
    dir: Path = Path("outputs")
    filename: str = "{id}.jpg"
    public_url: str | None = None   # where output.dir is served: the store import files link there


@dataclass(frozen=True)
class StateSettings:
    dir: Path | None = None     # None: <output.dir>/.pipeline


@dataclass(frozen=True)
class StorageSettings:
    options: dict = field(default_factory=dict)  # passed to fsspec for every storage URL


@dataclass(frozen=True)
class StoreSettings:
    """How a store export is read and written back (inputs/stores, outputs/storefiles)."""
    format: str = "auto"             # auto | shopify | woocommerce | merchant-center | plain
    images: str = "first"            # first | all
    position: str = "after"          # after | first: where generated pictures go in the import files
    merchant_attribute: str = "lifestyle_image_link"


@dataclass(frozen=True)
class BudgetSettings:
    max_credits: int | None = None
    confirm_over: int = 50


@dataclass(frozen=True)
class ImageSettings:
    max_upload_bytes: int = 5_242_880
    remote_timeout_s: float = 30.0
    remote_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class RunConfig:
    config_path: Path
    manifest_path: Path | str        # a str is a storage URL (s3://cat/catalog.csv)
    output: OutputSettings = field(default_factory=OutputSettings)
    limits: Limits = field(default_factory=Limits)
    poll: PollSettings = field(default_factory=PollSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    state: StateSettings = field(default_factory=StateSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    # output.dir as a storage URL (s3://cat/out): outputs are written there, and output.dir is then
    # the local directory where the results table and report are made before they are uploaded.
    output_url: str | None = None
    prompt: str | None = None
    variants: tuple[Variant, ...] = ()  # empty: the one implicit variant (inputs/variants.variants_of)
    store: StoreSettings = field(default_factory=StoreSettings)
    columns: dict = field(default_factory=dict)  # a plain table's id/image/... columns, e.g. {id: sku}

    shard: Any = None  # plan.shards.Shard when run with --shard K/N; set by the caller, not the YAML

    @property
    def state_root(self) -> Path:
        """state.dir, else <output.dir>/.pipeline: every shard's state lives under it."""
        return self.state.dir if self.state.dir is not None else self.output.dir / ".pipeline"

    @property
    def state_dir(self) -> Path:
        """This run's checkpoint, lock, run log and fetched sources: one directory per shard."""
        return self.state_root / self.shard.name if self.shard is not None else self.state_root

    @property
    def results_name(self) -> str:
        """results.csv, or a shard's part of it (results.shard-K-of-N.csv) that `pipeline report` merges."""
        return f"results.{self.shard.name}.csv" if self.shard is not None else "results.csv"

    def with_shard(self, shard: Any) -> RunConfig:
        """This config for one shard; with output.dir in a bucket, the shard makes its part of the
        table and its previews in a local directory of its own, so shards never touch each other's."""
        if self.output_url is None:
            return dataclasses.replace(self, shard=shard)
        site = self.state_root / shard.name / SITE_DIR
        return dataclasses.replace(self, shard=shard, output=dataclasses.replace(self.output, dir=site))

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / CHECKPOINT_NAME


# Config section -> dataclass; the schema's properties and these fields are kept equal by a test.
SECTIONS: dict[str, type] = {
    "output": OutputSettings, "limits": Limits, "poll": PollSettings, "api": ApiSettings,
    "retries": RetrySettings, "budget": BudgetSettings, "images": ImageSettings, "state": StateSettings,
    "storage": StorageSettings, "store": StoreSettings,
}
SITE_DIR = "site"  # under state.dir, when output.dir is a URL: the table and report before their upload


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


# -- templates ---------------------------------------------------------------------------------

class Template:
    """A ``{column}`` template, parsed once; placeholders are plain column names, nothing more.

    >>> Template.parse("{title} on {scene}").fill({"title": "A mug", "scene": "marble"})
    'A mug on marble'
    """

    def __init__(self, text: str, fields: list[str], positional: str):
        self.text = text
        self.fields = fields
        self._format = positional.format  # "{0} on {1}": columns are looked up by name, never as attributes
        self._get = itemgetter(*fields) if len(fields) > 1 else (
            (lambda values: (values[fields[0]],)) if fields else (lambda values: ()))

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raise ValueError saying what is wrong with a placeholder."""
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} in {text!r}; write {{{{ and }}}} for literal braces") from None
        fields: dict[str, int] = {}
        positional = ""
        for literal, name, spec, conversion in parsed:
            positional += literal.replace("{", "{{").replace("}", "}}")
            if name is None:
                continue
            if not name.strip() or name.isdigit():
                raise ValueError(f"placeholder {{{name}}} in {text!r} must name a column, e.g. {{title}}")
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                                 f"{':' + spec if spec else ''}}} in {text!r}: write just {{{name}}}")
            positional += f"{{{fields.setdefault(name, len(fields))}}}"
        return cls(text, list(fields), positional)

    def fill(self, values: Mapping[str, str]) -> str:
        """Fill the placeholders from ``values``; a missing column raises KeyError."""
        return self._format(*self._get(values))

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def output_name_problem(name: str) -> str | None:
    """Why a filled output file name would not stay inside output.dir, or None."""
    if "/" not in name and "\\" not in name and "\0" not in name and name not in ("", ".", ".."):
        return None  # the common case, "{id}.jpg", decided without splitting
    if not name:
        return "is empty"
    if "\\" in name or "\0" in name:
        return "must not contain backslashes or NUL characters"
    if name.startswith("/"):
        return "is an absolute path; it must be relative to output.dir"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must stay inside output.dir: no '..', '.' or empty parts"
    return None


# -- reading files ------------------------------------------------------------------------------

def display_path(path: str | Path) -> str:
    """A path as the user will recognise it: relative to the working directory when it is below it."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    rel = os.path.relpath(text)
    return text if rel.startswith("..") else rel


def read_text(path: Path | str, shown: str, kind: str, options: Mapping[str, Any] | None = None) -> str:
    """The file (or storage URL, opened with `options`) as UTF-8 text (a BOM is dropped), or a
    ConfigError saying why it is not."""
    data = _read_stored(path, shown, kind, options) if isinstance(path, str) else _read_local(path, shown, kind)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{shown}: is UTF-16 text; save it as UTF-8")
    if b"\0" in data:
        raise ConfigError(f"{shown}: is a binary file, not a text {kind}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{shown}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                          f"save the file as UTF-8") from None


def _read_local(path: Path, shown: str, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: {kind} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the {kind}: {exc.strerror}") from None


def _read_stored(url: str, shown: str, kind: str, options: Mapping[str, Any] | None) -> bytes:
    store = Remote.open(url, options)
    try:
        return store.fs.cat_file(store.root)
    except FileNotFoundError as exc:
        if is_missing_bucket(exc):
            raise ConfigError(describe(exc, url)) from None
        raise ConfigError(f"{shown}: {kind} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a folder, not a {kind}") from None
    except faults() as exc:
        raise ConfigError(describe(exc, url)) from None


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (C-accelerated when available) that also refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, shown: str) -> Any:
    """Parse YAML with the safe loader; a syntax error becomes a ConfigError naming its line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        if exc.context_mark and mark and exc.context_mark.line != mark.line and "block" not in (exc.context or ""):
            what += f" (it began on line {exc.context_mark.line + 1})"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and re.search(r":\s+\{", lines[mark.line]):
            what += '; a value starting with { must be quoted, e.g. prompt: "{title} on marble"'
        raise ConfigError(f"{shown}: {where}YAML syntax error: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{shown}: line {line}: character {exc.character!r} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: YAML error: {' '.join(str(exc).split())}") from None


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)
