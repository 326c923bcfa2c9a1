"""Variants: several pictures per item, each made by a chain of LightX tools (the config's ``variants``).

    >>> cfg = load_config("configs/variants.yaml")
    >>> [(v.name, [s.tool for s in v.steps]) for v in variants_of(cfg)]
    [('lifestyle', ['background-generator', 'upscale']), ('marketplace', ['remove-background'])]

A step's field values are templates over the item's manifest columns, as ``prompt`` is: ``{prompt}``
is the item's prompt as it is without variants, ``{variant}`` the variant's name. An image field
(``style_image``, or a ``background`` that is not a colour) is a local path relative to the
manifest, as the ``image`` column is, or an http(s) URL; ``"{style_image}"`` takes it from a column.
Without ``variants`` a config has one implicit variant: one background-generator step whose prompt is
the item's prompt (``variants_of``), so nothing changes for it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.inputs.files import display_path
from pipeline.inputs.local_images import image_problem
from pipeline.inputs.locations import is_http_url
from pipeline.inputs.manifest import manifest_base, resolve_image
from pipeline.inputs.settings import IMPLICIT, Step, Variant  # noqa: F401 - the config's dataclasses
from pipeline.inputs.template import Template
from pipeline.lightx.tools import TOOLS, Tool, field_problems, with_defaults
from pipeline.store import remote

if TYPE_CHECKING:
    from pipeline.inputs.manifest import Manifest
    from pipeline.inputs.settings import RunConfig


def step_id(item_id: str, variant: str, index: int) -> str:
    """The checkpoint row of one step of one item's variant: ``sku-1/lifestyle/2`` (steps count from 1)."""
    return f"{item_id}/{variant}/{index + 1}"


def variants_of(cfg: RunConfig) -> tuple[Variant, ...]:
    """The config's variants, or the one implicit variant of a config without them."""
    return cfg.variants or (IMPLICIT,)


def parse_variants(data: Iterable[Mapping[str, Any]] | None) -> tuple[Variant, ...]:
    """Variants from config data that passed ``config_problems``."""
    return tuple(Variant(v["name"], tuple(Step(s["tool"], tuple((k, x) for k, x in s.items() if k != "tool"))
                                          for s in v["steps"])) for v in data or ())


def label(variant: int, name: Any = None, step: int | None = None, tool: Any = None) -> str:
    """``variant lifestyle, step 2 (upscale)``: how problems name a step (steps count from 1)."""
    where = f"variant {name}" if isinstance(name, str) and re.fullmatch(r"[a-z0-9_-]+", name) \
        else f"variants[{variant}]"
    if step is not None:
        where += f", step {step + 1}" + (f" ({tool})" if isinstance(tool, str) and tool in TOOLS else "")
    return where


def relabel(line: str, data: Mapping[str, Any]) -> str:
    """A schema problem at ``variants[0].steps[1].quality``, worded ``variant lifestyle, step 2 (upscale), quality``."""
    match = re.match(r"variants\[(\d+)\](?:\.steps\[(\d+)\])?(?:\.(\w+))?(:? )", line)
    variants = data.get("variants")
    if match is None or not isinstance(variants, list):
        return line
    i, j = int(match[1]), None if match[2] is None else int(match[2])
    variant = variants[i] if isinstance(variants[i], dict) else {}
    steps = variant.get("steps") if isinstance(variant.get("steps"), list) else []
    step = steps[j] if j is not None and j < len(steps) and isinstance(steps[j], dict) else {}
    where = label(i, variant.get("name"), j, step.get("tool"))
    rest = line[match.end():]
    if not match[3]:
        return f"{where}{match[4]}{rest}"
    return f"{where}{'.' if where == f'variants[{i}]' else ', '}{match[3]}{match[4]}{rest}"


def config_problems(data: Mapping[str, Any]) -> list[str]:
    """What the schema cannot see: duplicate names, unknown tools and fields, bad literal values, templates."""
    variants = data.get("variants")
    if not isinstance(variants, list):
        return []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, variant in enumerate(variants):
        if not isinstance(variant, dict):
            continue
        name = variant.get("name")
        if isinstance(name, str) and name in seen:
            problems.append(f"{label(i, name)}: the name is also used by variants[{seen[name]}]; "
                            f"names must be unique")
        elif isinstance(name, str):
            seen[name] = i
        steps = variant.get("steps") if isinstance(variant.get("steps"), list) else []
        for j, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("tool"), str):
                continue
            where = label(i, name, j, step["tool"])
            given = {k: v for k, v in step.items() if k != "tool"}
            for key, problem in field_problems(step["tool"], given):
                if key is None:
                    problems.append(f"{where}: {problem}")
                else:  # "quality is required by upscale", "qualty: unknown field ..."
                    problems.append(f"{where}, {key}{' ' if problem.startswith('is ') else ': '}{problem}")
            tool = TOOLS.get(step["tool"])
            for key, value in given.items():
                field = tool.field(key) if tool else None
                if field is None or not isinstance(value, (str, int)) or isinstance(value, bool):
                    continue  # an unknown field, or a value the schema has refused
                try:
                    if isinstance(value, str) and Template.parse(value).fields:
                        continue  # checked per item, once filled
                    field.check(value)
                except ValueError as exc:
                    problems.append(f"{where}, {key}: {exc}")
            if tool is not None and j == len(steps) - 1 and _png(tool, given):
                problems.append(f"{where}: the picture it makes is a PNG (a transparent cut-out), but "
                                f"output.filename ends in .jpg; give background a colour, e.g. \"#FFFFFF\"")
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    filename = output.get("filename", "{id}.jpg")
    if len(variants) > 1 and isinstance(filename, str) and "{variant}" not in filename:
        problems.append(f"output.filename {filename!r} must use {{variant}} when there are several variants, "
                        f"e.g. \"{{variant}}/{{id}}.jpg\"; otherwise they write the same file")
    return problems


def _png(tool: Tool, values: Mapping[str, Any]) -> bool:
    """Whether a step whose values are all literal makes a PNG."""
    if any(isinstance(v, str) and "{" in v for v in values.values()):
        return False
    return tool.output_type(with_defaults(tool, values)) == "image/png"


# -- per item, before anything is sent -----------------------------------------------------------

def item_problems(cfg: RunConfig, manifest: Manifest,
                  sizes: Mapping[Path, tuple[int, int] | None]) -> tuple[list[str], dict[str, list[str]]]:
    """(file-level problems, item id -> problems) of every step of every variant, for every item.

    ``sizes`` holds each local source image's size by path, and each stored one's by URL (None:
    unknown). Sizes are followed along a chain with each tool's ``output_size``; LightX documents
    none of them, so a background generator, photoshoot or cut-out is assumed to keep its input's
    size, as the sandbox does.
    An http(s) source's size is unknown until it is fetched, and a source over the upload cap is
    shrunk before it is sent; both are checked at run time, not here.
    """
    config = display_path(cfg.config_path)
    shown = display_path(manifest.path) if manifest.path else "manifest"
    known = {*manifest.columns, "id", "image", "variant"}
    known.discard("prompt")
    if cfg.prompt is not None or "prompt" in manifest.columns:
        known.add("prompt")
    base = manifest_base(manifest.path)
    checked: dict[Path, str | None] = {}

    def image_check(text: str) -> str | None:
        if is_http_url(text):
            return None
        if remote.is_remote(text):
            return remote.scheme_problem(text)  # read when the run resolves the step
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", text) and not re.match(r"[A-Za-z]:[\\/]", text) \
                and remote.scheme_of(text) != "file":
            return f"must be a local path, an http(s):// URL or a storage URL (got {text!r})"
        path, url = resolve_image(base, text)
        if url is not None:
            return None  # beside a manifest in a bucket: read when the run resolves the step
        if path not in checked:
            checked[path] = image_problem(path)
        return None if checked[path] is None else f"image {text!r} {checked[path]}"

    file_level: list[str] = []
    plans = []  # (variant, [(tool, {field: Template | int})])
    for i, variant in enumerate(cfg.variants):
        steps = []
        for j, step in enumerate(variant.steps):
            where = label(i, variant.name, j, step.tool)
            tool = TOOLS[step.tool]
            templates: dict[str, Template | int] = {}
            for name, value in step.fields:
                if not isinstance(value, str):
                    templates[name] = value
                    continue
                template = templates[name] = Template.parse(value)
                for missing in [f for f in template.fields if f not in known]:
                    file_level.append(f"{config}: {where}, {name} uses {{{missing}}}, but {shown} has no "
                                      f"{missing!r} column (columns: {', '.join(manifest.columns)})")
                field = tool.field(name)
                if not template.fields and field.is_image(value) and (problem := image_check(value)):
                    file_level.append(f"{config}: {where}, {name}: {problem}")
            steps.append((where, tool, templates))
        plans.append((variant, steps))
    if file_level:
        return file_level, {}

    problems: dict[str, list[str]] = {}
    for item in manifest.items:
        cells = {**item.extra, "id": item.id, "image": item.image}
        if item.prompt:
            cells["prompt"] = item.prompt
        size = sizes.get(item.image_path if item.image_path is not None else item.image_url)
        found = []
        for variant, steps in plans:
            cells["variant"] = variant.name
            found += _chain(steps, cells, size, image_check)
        if found:
            where = manifest.where(item.row, item.id)
            problems[item.id] = [f"{where}: {line}" for line in found]
    return [], problems


def _chain(steps, cells: Mapping[str, str], size: tuple[int, int] | None, image_check) -> list[str]:
    """Problems of one variant for one item: each step's values filled and checked, sizes followed."""
    problems = []
    source = "the source's size"
    for j, (where, tool, templates) in enumerate(steps):
        values: dict[str, Any] = {}
        for name, template in templates.items():
            field = tool.field(name)
            try:
                value = template if isinstance(template, int) else template.fill(cells)
                values[name] = field.check(value)
            except KeyError as exc:
                problems.append(f"{where}, {name}: uses {{{exc.args[0]}}}, which this item does not have")
                continue
            except ValueError as exc:
                problems.append(f"{where}, {name}: {exc}")
                continue
            if not isinstance(template, int) and template.fields and field.is_image(value) \
                    and (problem := image_check(value)):
                problems.append(f"{where}, {name}: {problem}")
        if len(values) < len(templates):
            size = None  # what follows depends on a value that is wrong; say nothing more about it
            continue
        values = with_defaults(tool, values)
        if j == len(steps) - 1 and any(not isinstance(t, int) and t.fields for t in templates.values()) \
                and tool.output_type(values) == "image/png":
            problems.append(f"{where}: the picture it makes is a PNG (a transparent cut-out), but output.filename "
                            f"ends in .jpg; give background a colour")
        if size is not None:
            if problem := tool.limit_problem(values, size):
                problems.append(f"{where}, input: {problem} ({source})")
                size = None
                continue
            size = tool.output_size(values, size)
            source = f"the output of {where.split(', ', 1)[1]}; assumed from its input's size"
    return problems
