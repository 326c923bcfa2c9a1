"""JSON Schema checks for config and manifest: every violation worded as one line naming its field.

    >>> schema_problems(schema_checker("config"), {"limits": {"concurency": 4}})
    ["limits.concurency: unknown key (did you mean 'concurrency'?)", "manifest is required"]

The rules live in schemas/*.schema.json (packaged as ``pipeline.schemas``); nothing here repeats them.
"""
from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

DEFAULT_KEY_ENV = "LIGHTX_API_KEY"

@cache
def load_schema(name: str) -> dict:
    """One of the packaged schemas, e.g. ``load_schema("config")`` for config.schema.json."""
    return json.loads(files("pipeline.schemas").joinpath(f"{name}.schema.json").read_text("utf-8"))


@dataclass(frozen=True, eq=False)
class SchemaChecker:
    """Validates against one subschema; ``fast`` answers "valid" cheaply for the common case.
    jsonschema is imported, and the validator built, only when an instance fails ``fast``: a valid
    config and manifest never need it (its import was 60 ms of every command's CPU)."""
    schema: dict
    fast: Callable[[Any], bool] | None

    def errors(self, instance: Any) -> list[ValidationError]:
        if self.fast is not None and self.fast(instance):
            return []
        return list(self.validator.iter_errors(instance))

    @cached_property
    def validator(self) -> Draft202012Validator:
        from jsonschema import Draft202012Validator
        return Draft202012Validator(self.schema)


@cache
def schema_checker(name: str, pointer: str = "") -> SchemaChecker:
    """A checker for ``load_schema(name)`` at JSON pointer ``pointer``, e.g. ``"/$defs/item"``."""
    root = load_schema(name)
    schema = {"$schema": root["$schema"], **resolve_pointer(root, pointer), "$defs": root.get("$defs", {})}
    return SchemaChecker(schema, compile_fast(schema, schema))


@cache
def field_checks(name: str, pointer: str) -> dict[str, Callable[[Any], bool]] | None:
    """Each property's quick yes-check, for an object schema that requires exactly its properties and
    allows no other: a mapping with exactly those keys is valid when each value passes its own check,
    so a caller may check the values that repeat once. None when the schema is not of that shape."""
    root = load_schema(name)
    node = resolve_pointer(root, pointer)
    props = node.get("properties", {})
    if set(node) - _ANNOTATIONS - {"type", "required", "properties", "additionalProperties"} or \
            node.get("type", "object") != "object" or node.get("additionalProperties") is not False or \
            set(node.get("required", ())) != set(props):
        return None
    checks = {key: compile_fast(sub, root) for key, sub in props.items()}
    return None if None in checks.values() else checks  # type: ignore[return-value]


def resolve_pointer(root: dict, pointer: str) -> Any:
    node: Any = root
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "examples", "errorMessage"}
_PY_TYPES = {"string": str, "null": type(None), "object": dict, "array": list, "boolean": bool}
_KEYWORDS = {"$ref", "type", "minLength", "maxLength", "pattern", "required", "properties", "additionalProperties",
             "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "items",
             "propertyNames"}
_BOUNDS = {"minimum": operator.ge, "maximum": operator.le, "exclusiveMinimum": operator.gt,
           "exclusiveMaximum": operator.lt}  # Python compares an int and a float exactly


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:  # JSON Schema's: 1.0 is an integer, True is not
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def compile_fast(schema: Any, root: dict) -> Callable[[Any], bool] | None:
    """A quick yes-check for a subschema built only from simple keywords, else None.

    jsonschema needs about 170 us per manifest row: 17 s for 100,000. This predicate reads the same
    rules from the schema but only answers "valid"; otherwise jsonschema runs and words the errors.
    A keyword it does not know makes it return None, meaning "always ask jsonschema".
    """
    if isinstance(schema, bool):
        return lambda v: schema
    if not isinstance(schema, dict) or set(schema) - _ANNOTATIONS - _KEYWORDS:
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
        if set(names) - set(_PY_TYPES) - {"number", "integer"}:
            return None
        plain = tuple(_PY_TYPES[n] for n in names if n in _PY_TYPES)
        numeric = _number if "number" in names else (_integer if "integer" in names else None)
        checks.append(lambda v: (isinstance(v, plain) and (bool in plain or not isinstance(v, bool)))
                      or (numeric is not None and numeric(v)))
    if "enum" in schema:
        if not isinstance(options := schema["enum"], list) or \
                not all(o is None or isinstance(o, (str, bool, int, float)) for o in options):
            return None
        # jsonschema's equality: True is not 1; 1 == 1.0, which this yes-check leaves to it
        checks.append(lambda v: any(type(v) is type(o) and v == o for o in options))
    for keyword, holds in _BOUNDS.items():
        if keyword in schema:
            if not _number(bound := schema[keyword]):
                return None
            checks.append(lambda v, holds=holds, bound=bound: not _number(v) or holds(v, bound))
    if {"minItems", "maxItems", "items"} & set(schema):
        fewest, most = schema.get("minItems", 0), schema.get("maxItems", float("inf"))
        if (each := compile_fast(schema.get("items", True), root)) is None:
            return None
        checks.append(lambda v: not isinstance(v, list) or (fewest <= len(v) <= most and all(map(each, v))))
    if "propertyNames" in schema:
        if (named := compile_fast(schema["propertyNames"], root)) is None:
            return None
        checks.append(lambda v: not isinstance(v, dict) or all(map(named, v)))
    if kind == "string" or {"minLength", "maxLength", "pattern"} & set(schema):
        low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
        search = re.compile(schema["pattern"]).search if "pattern" in schema else None
        other = kind != "string"  # without type: string, other types pass these keywords
        passed: set[str] = set()  # texts already found valid: a catalog's images and prompts repeat

        def text(v: Any) -> bool:
            if not isinstance(v, str):
                return other
            if v in passed:
                return True
            if low <= len(v) <= high and (search is None or search(v) is not None):
                if len(passed) < 4096:
                    passed.add(v)
                return True
            return False
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
        env_name = context.get("key_env", DEFAULT_KEY_ENV)
        return (f"unknown key; the API key is never read from the config file: "
                f"set the environment variable {env_name} instead (api.key_env names it)")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return f"unknown key ({hint})"
