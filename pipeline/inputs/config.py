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


@dataclass(frozen=True)
class StateSettings:
    dir: Path | None = None     # None: <output.dir>/.pipeline


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
    manifest_path: Path
    output: OutputSettings = field(default_factory=OutputSettings)
    limits: Limits = field(default_factory=Limits)
    poll: PollSettings = field(default_factory=PollSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    state: StateSettings = field(default_factory=StateSettings)
    prompt: str | None = None
    variants: tuple[Variant, ...] = ()  # empty: the one implicit variant (inputs/variants.variants_of)

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

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / CHECKPOINT_NAME


# Config section -> dataclass; the schema's properties and these fields are kept equal by a test.
SECTIONS: dict[str, type] = {
    "output": OutputSettings, "limits": Limits, "poll": PollSettings, "api": ApiSettings,
    "retries": RetrySettings, "budget": BudgetSettings, "images": ImageSettings, "state": StateSettings,
}


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> RunConfig:
    """Read, validate and resolve a YAML config; raise one ConfigError listing every problem."""
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
    if problems:
        raise ConfigError(problems)

    base = config_path.parent
    sections = {name: _section(cls, data.get(name) or {}) for name, cls in SECTIONS.items()}
    sections["output"] = dataclasses.replace(
        sections["output"], dir=Path(os.path.normpath(base / sections["output"].dir)))
    if sections["state"].dir is not None:
        sections["state"] = StateSettings(dir=Path(os.path.normpath(base / sections["state"].dir)))
    sections["api"] = dataclasses.replace(
        sections["api"], base_url=(base_url or sections["api"].base_url).rstrip("/"))
    return RunConfig(config_path=config_path, manifest_path=Path(os.path.normpath(base / data["manifest"])),
                     prompt=data.get("prompt"), variants=parse_variants(data.get("variants")), **sections)


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


def read_text(path: Path, shown: str, kind: str) -> str:
    """The file as UTF-8 text (a BOM is dropped), or a ConfigError saying why it is not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: {kind} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the {kind}: {exc.strerror}") from None
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
