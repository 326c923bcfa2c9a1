"""`pipeline init EXPORT`: a first, commented catalog.yaml for a store export, valid without an edit.

    >>> written = init_config("products_export.csv")
    >>> written.path.name, written.summary[0]
    ('catalog.yaml', 'products_export.csv: Shopify product CSV (current headers) · 120 products · ...')
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.inputs.files import display_path
from pipeline.inputs.stores import open_store, read_rows

CONFIG_NAME = "catalog.yaml"
SCENE = "on a clean surface in soft natural light, realistic shadows, professional product photography"
PROMPT_LIMIT = 500
# Fields a starting prompt may use, in the order they read well: "{title}, {product_type} by {brand}".
OPTIONAL = (("product_type", ", {product_type}"), ("brand", " by {brand}"))


@dataclass(frozen=True)
class Written:
    path: Path
    summary: list[str]   # what was found, as validate says it
    prompt: str
    problems: list[str]  # what `pipeline validate` will refuse in the export (the file is written anyway)


def init_config(export: str | Path, output: str | Path | None = None, *, force: bool = False) -> Written:
    """Write a config for `export` (beside it unless `output` names the file); refuse to overwrite unless `force`."""
    export = Path(os.path.abspath(export))
    shown = display_path(export)
    target = Path(os.path.abspath(output)) if output is not None else export.parent / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{display_path(target)}: already exists; pass --force to overwrite it, or "
                          f"--output to write another file")
    if not export.is_file():
        raise ConfigError(f"{shown}: export not found" if not export.exists() else f"{shown}: is not a file")
    found = open_store(export, shown)
    if found is None:
        raise ConfigError(f"{shown}: is already an id,image manifest; write `manifest: {export.name}` and a "
                          f"prompt in a config (see README), or pass a store's own export")
    summary, rows = read_rows(found, "first", shown)
    filled = {name: 0 for name, _ in OPTIONAL}
    lengths = {name: 0 for name in ("title", *filled)}
    items = 0
    for _, cells, _ in rows:
        if cells is None:
            continue
        items += 1
        for name in lengths:
            value = cells.get(name, "")
            lengths[name] = max(lengths[name], len(value))
            if name in filled and value.strip():
                filled[name] += 1
    prompt = "{title}"
    for name, text in OPTIONAL:
        longest = sum(lengths.values()) + len(SCENE) + 20
        if items and filled[name] == items and longest <= PROMPT_LIMIT:
            prompt += text
    prompt += f", {SCENE}"
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = os.path.relpath(export, target.parent)
    target.write_text(_document(found.format, found.label, summary.lines(), manifest, prompt, items),
                      encoding="utf-8")
    return Written(target, summary.lines(), prompt, _problems(target))


def _problems(config: Path) -> list[str]:
    """The export's rows that validate refuses (duplicates, blank handles, bad picture cells), as it words them."""
    from pipeline.inputs.validate import problem_lines, validate
    try:
        _, manifest, _ = validate(config, check_images=False)
    except ConfigError as exc:
        return exc.problems
    return problem_lines(manifest)


def _document(fmt: str, label: str, summary: list[str], manifest: str, prompt: str, items: int) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    found = "\n".join(f"#   {line}" for line in summary)
    return f"""\
# Written by `pipeline init` on {when}. Check it with `pipeline validate {CONFIG_NAME}`,
# try it with `pipeline run {CONFIG_NAME} --sandbox` (no key, no credits), then run it for real.
# What the export holds:
{found}

# The store's export, unchanged; export it again and rerun: only changed products are re-bought.
manifest: {json.dumps(manifest, ensure_ascii=False)}

store:
  format: {fmt}          # {label}; `auto` detects it from the file again
  images: first          # first: one picture per product, its main one; all: every picture ({{id}}-{{position}})
  position: after        # generated pictures after the existing ones in the import file; `first` makes them the main one

# One prompt for every product. Fields: {{title}} {{description}} (HTML removed) {{brand}}
# {{product_type}} {{tags}} {{image_alt}}, and every column of the export in snake_case.
prompt: {json.dumps(prompt, ensure_ascii=False)}

output:
  dir: outputs           # generated pictures, results.csv and report.html
  # public_url: https://cdn.example.com/lightx/   # where output.dir is served (a CDN, a public bucket):
  #                      # set it, and each run writes the file that imports the pictures into the store

budget:
  max_credits: {items}       # a run never spends more (one credit per generated picture; {items} for all)
  confirm_over: 50       # ask before a run spends more than this
"""
