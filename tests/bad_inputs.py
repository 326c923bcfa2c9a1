"""The matrix of broken catalogs, shared by the validate and CLI tests: every case must make
``pipeline validate`` exit 2, and one line of its stderr must contain every string in ``expect``,
and nothing in ``absent``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from helpers import jpeg_bytes


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


def _noise(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((48, 40), 60).convert("RGB").save(out, fmt)
    return out.getvalue()


GIF, WEBP = _noise("GIF"), _noise("WEBP")


JPEG = jpeg_bytes((64, 64), product=False, noise=True)
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
    Case("image-truncated-png", catalog(csv=HEADER + "sku-1,cut.png,A mug\n", **{"cut.png": PNG[:len(PNG) // 2]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.png' is truncated: no PNG end chunk (IEND)",)),
    Case("image-png-cut-in-its-header", catalog(csv=HEADER + "sku-1,cut.png,A mug\n", **{"cut.png": PNG[:20]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.png' cannot be read as an image",), absent=("Traceback",)),
    Case("image-truncated-gif", catalog(csv=HEADER + "sku-1,cut.gif,A mug\n", **{"cut.gif": GIF[:len(GIF) // 2]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.gif' is truncated: no GIF trailer",)),
    Case("image-truncated-webp", catalog(csv=HEADER + "sku-1,cut.webp,A mug\n", **{"cut.webp": WEBP[:len(WEBP) // 2]}),
         ("catalog.csv row 2 (id sku-1): image 'cut.webp' is truncated: shorter than its RIFF header says",)),
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
