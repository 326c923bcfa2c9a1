"""CSV/YAML manifest -> list[Item], validated at one boundary."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Item:
    id: str
    image: str                      # as written in the manifest
    prompt: str                     # final prompt, template already filled
    row: int                        # 1-based data row number (CSV: header is row 0... see load_manifest)
    image_path: Path | None = None  # resolved local path, or None for a URL
    image_url: str | None = None    # http(s) URL, or None for a local file
    output_name: str = ""           # file name relative to output.dir
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
