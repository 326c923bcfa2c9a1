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
import difflib
import json
import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable

import yaml
from jsonschema import Draft202012Validator, ValidationError

from pipeline.errors import ConfigError

DEFAULT_BASE_URL = "https://api.lightxeditor.com/external/api"
BASE_URL_ENV = "LIGHTX_BASE_URL"


@dataclass(frozen=True)
class Limits:
    concurrency: int = 16
    requests_per_second: float | None = None


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 3.0
    max_attempts: int | None = None  # None: use the maxRetriesAllowed the API returns


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = DEFAULT_BASE_URL
    key_env: str = "LIGHTX_API_KEY"
    timeout_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    failed_orders: int = 2      # resubmits of an order that ended `failed` (free)
    transient: int = 6          # attempts per request on transient errors
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class OutputSettings:
    dir: Path = Path("outputs")
    filename: str = "{id}.jpg"


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
    prompt: str | None = None

    @property
    def state_dir(self) -> Path:
        return self.output.dir / ".pipeline"


# Config section -> dataclass; the schema's properties and these fields are kept equal by a test.
SECTIONS: dict[str, type] = {
    "output": OutputSettings, "limits": Limits, "poll": PollSettings, "api": ApiSettings,
    "retries": RetrySettings, "budget": BudgetSettings, "images": ImageSettings,
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
    problems = [f"{shown}: {line}" for line in schema_problems(schema_checker("config"), data, context)]
    base_url = env.get(BASE_URL_ENV) or None
    if base_url is not None:
        sub = schema_checker("config", "/properties/api/properties/base_url")
        problems += schema_problems(sub, base_url, root=BASE_URL_ENV)
    problems += [f"{shown}: {line}" for line in _template_problems(data)]
    if problems:
        raise ConfigError(problems)

    base = config_path.parent
    sections = {name: _section(cls, data.get(name) or {}) for name, cls in SECTIONS.items()}
    sections["output"] = dataclasses.replace(
        sections["output"], dir=Path(os.path.normpath(base / sections["output"].dir)))
    sections["api"] = dataclasses.replace(
        sections["api"], base_url=(base_url or sections["api"].base_url).rstrip("/"))
    return RunConfig(config_path=config_path, manifest_path=Path(os.path.normpath(base / data["manifest"])),
                     prompt=data.get("prompt"), **sections)


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


# -- schemas ------------------------------------------------------------------------------------

@cache
def load_schema(name: str) -> dict:
    """One of the packaged schemas, e.g. ``load_schema("config")`` for config.schema.json."""
    return json.loads(files("pipeline.schemas").joinpath(f"{name}.schema.json").read_text("utf-8"))


@dataclass(frozen=True)
class SchemaChecker:
    """Validates against one subschema; ``fast`` answers "valid" cheaply for the common case."""
    validator: Draft202012Validator
    fast: Callable[[Any], bool] | None

    def errors(self, instance: Any) -> list[ValidationError]:
        if self.fast is not None and self.fast(instance):
            return []
        return list(self.validator.iter_errors(instance))


@cache
def schema_checker(name: str, pointer: str = "") -> SchemaChecker:
    """A checker for ``load_schema(name)`` at JSON pointer ``pointer``, e.g. ``"/$defs/item"``."""
    root = load_schema(name)
    schema = {"$schema": root["$schema"], **resolve_pointer(root, pointer), "$defs": root.get("$defs", {})}
    return SchemaChecker(Draft202012Validator(schema), compile_fast(schema, schema))


def resolve_pointer(root: dict, pointer: str) -> Any:
    node: Any = root
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "examples", "errorMessage"}
_PY_TYPES = {"string": str, "null": type(None), "object": dict, "array": list, "boolean": bool}


def compile_fast(schema: Any, root: dict) -> Callable[[Any], bool] | None:
    """A quick yes-check for a subschema built only from simple keywords, else None.

    jsonschema needs about 170 us per manifest row: 17 s for 100,000. This predicate reads the same
    rules from the schema but only answers "valid"; otherwise jsonschema runs and words the errors.
    A keyword it does not know makes it return None, meaning "always ask jsonschema".
    """
    if isinstance(schema, bool):
        return lambda v: schema
    if not isinstance(schema, dict) or set(schema) - _ANNOTATIONS - {
            "$ref", "type", "minLength", "maxLength", "pattern", "required", "properties",
            "additionalProperties"}:
        return None
    checks: list[Callable[[Any], bool]] = []
    if "$ref" in schema:
        if not schema["$ref"].startswith("#/") or not (ref := compile_fast(
                resolve_pointer(root, schema["$ref"][1:]), root)):
            return None
        checks.append(ref)
    kind = schema.get("type")  # a lone "string" or "object" is folded into the checks below
    if kind is not None and kind not in ("string", "object"):
        names = [kind] if isinstance(kind, str) else kind
        if set(names) - set(_PY_TYPES) - {"number"}:
            return None  # "integer" accepts 1.0; leave such subtleties to jsonschema
        plain = tuple(_PY_TYPES[n] for n in names if n != "number")
        if "number" in names:
            checks.append(lambda v: isinstance(v, plain) or (
                isinstance(v, (int, float)) and not isinstance(v, bool)))
        else:
            checks.append(lambda v: isinstance(v, plain) and (bool in plain or not isinstance(v, bool)))
    if kind == "string" or {"minLength", "maxLength", "pattern"} & set(schema):
        low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
        search = re.compile(schema["pattern"]).search if "pattern" in schema else None
        other = kind != "string"  # without type: string, other types pass these keywords

        def text(v: Any) -> bool:
            if not isinstance(v, str):
                return other
            return low <= len(v) <= high and (search is None or search(v) is not None)
        checks.append(text)
    if kind == "object" or {"required", "properties", "additionalProperties"} & set(schema):
        required = tuple(schema.get("required", ()))
        props = {k: compile_fast(sub, root) for k, sub in schema.get("properties", {}).items()}
        extra = compile_fast(schema.get("additionalProperties", True), root)
        if extra is None or None in props.values():
            return None
        not_dict = kind != "object"

        def mapping(v: Any) -> bool:
            if not isinstance(v, dict):
                return not_dict
            for key in required:
                if key not in v:
                    return False
            for key, value in v.items():
                if not props.get(key, extra)(value):
                    return False
            return True
        checks.append(mapping)
    if len(checks) == 1:
        return checks[0]

    def every(v: Any) -> bool:
        for check in checks:
            if not check(v):
                return False
        return True
    return every


# Never echo these fields' values: a user may have pasted the API key there.
_NO_ECHO = {"key_env"}
_SECRET_WORDS = ("api_key", "apikey", "api-key", "token", "secret", "password")


def schema_problems(checker: SchemaChecker, instance: Any, context: Mapping[str, str] | None = None, *,
                    root: str = "", keywords: set[str] | None = None) -> list[str]:
    """Every schema violation as one line naming its field (``root`` names the instance itself)."""
    errors = sorted(checker.errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    lines = []
    for error in errors:
        if keywords is None or error.validator in keywords:
            lines.extend(describe(error, context or {}, root=root))
    return lines


def field_name(path: Iterable[Any]) -> str:
    """``["limits", "concurrency"]`` -> ``"limits.concurrency"``; list indexes as ``[3]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: ValidationError, context: Mapping[str, str], *, root: str = "") -> list[str]:
    """One line per problem in a jsonschema error: ``field message`` or ``field: message``."""
    lines = _describe(error, context, root)
    return [line.strip() for line in lines]


def _describe(error: ValidationError, context: Mapping[str, str], root: str) -> list[str]:
    path = [root, *error.absolute_path] if root else list(error.absolute_path)
    where = field_name(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        return [f"{field_name([*path, key])}: {_unknown_key(str(key), known, context)}"
                for key in error.instance if key not in known]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        name = next((k for k in missing if error.message.startswith(repr(k))), missing[0] if missing else "?")
        return [f"{field_name([*path, name])} is required"]
    custom = error.schema.get("errorMessage")
    if isinstance(custom, dict):
        custom = custom.get(error.validator)
    if not custom:
        return [f"{where}: {error.message}" if where else error.message]
    value = error.instance
    if path and path[-1] in _NO_ECHO or value is None or isinstance(value, (dict, list)):
        return [f"{where} {custom}"]
    if isinstance(value, str):
        if not value.strip():
            return [f"{where} {custom}"]
        got = repr(value) if len(value) <= 60 else f"{len(value)} characters"
    else:
        got = repr(value)[:60]
    return [f"{where} {custom} (got {got})"]


def _unknown_key(key: str, known: list[str], context: Mapping[str, str]) -> str:
    if any(word in key.lower() for word in _SECRET_WORDS) or key.lower() == "key":
        env_name = context.get("key_env", ApiSettings.key_env)
        return (f"unknown key; the API key is never read from the config file: "
                f"set the environment variable {env_name} instead (api.key_env names it)")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"unknown key ({hint})"
