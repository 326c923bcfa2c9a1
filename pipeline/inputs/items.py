"""What a manifest becomes: its Items (the rows that can run), its invalid rows, and how messages name a row."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.inputs import stores
from pipeline.inputs.files import display_path
from pipeline.inputs.readers import UNITS, suffix

RESERVED = ("id", "image", "prompt")


class Cells(Mapping):
    """An item's own cells as a tuple, over a {column: position} layout that every row with the same
    columns shares. A dict per row of a store export (20-50 columns) cost 0.8-2 KB an item; this is a
    third of that (#21 §1). Read like the dict it replaces: `{**cells}`, `.get`, `repr`."""

    __slots__ = ("_at", "_values")

    def __init__(self, at: dict[str, int], values: tuple[str, ...]):
        self._at, self._values = at, values

    def __getitem__(self, key: str) -> str:
        return self._values[self._at[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def get(self, key: str, default=None):  # Mapping's goes through __getitem__ and KeyError: 3x slower
        at = self._at.get(key)
        return default if at is None else self._values[at]

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def __repr__(self) -> str:
        return repr(dict(self))  # as the dict's: the results table's digest stays the same

    def __reduce__(self):
        return Cells, (self._at, self._values)


# Not frozen: a frozen dataclass's __init__ costs three times as much (1.5 s for a million rows). Nothing
# assigns to an Item: `build` makes them, dataclasses.replace copies them; they hash as a frozen one did.
@dataclass(slots=True, unsafe_hash=True)
class Item:
    id: str
    image: str                      # as written in the manifest
    prompt: str                     # final prompt, template already filled
    row: int                        # CSV: spreadsheet row (header is row 1); YAML: 1-based index in items
    image_path: Path | None = None  # resolved local path, or None for a URL
    image_url: str | None = None    # http(s) or storage URL (s3://...), or None for a local file
    output_name: str = ""           # file name relative to output.dir (with variants: the first variant's)
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)  # a dict, or Cells
    output_names: tuple[str, ...] = ()  # with variants: one file name per variant, in config order


@dataclass(frozen=True)
class InvalidItem:
    """A row that cannot run; ``problems`` are full one-line messages naming file, row and field."""
    id: str | None
    row: int
    problems: list[str]


@dataclass(frozen=True)
class Manifest:
    items: list[Item]
    invalid: list[InvalidItem]
    columns: list[str]
    path: Path | str | None = None  # a str is a storage URL
    sha256: str | None = None       # of the manifest text these items were read from
    store: stores.StoreSummary | None = None  # a store export: its format, products, products without a picture

    def where(self, row: int, item_id: str | None) -> str:
        """``catalog.csv row 7 (id sku-777)``: how messages name one row."""
        if self.path is None:
            return where("manifest", "row", row, item_id)
        return where(display_path(self.path), UNITS.get(suffix(self.path), "row"), row, item_id)


def where(shown: str, unit: str, row: int, item_id: str | None) -> str:
    if not item_id:
        return f"{shown} {unit} {row}"
    if len(item_id) > 40 or not item_id.isprintable() or any(c.isspace() for c in item_id):
        return f"{shown} {unit} {row} (id {item_id[:40]!r}{'...' if len(item_id) > 40 else ''})"
    return f"{shown} {unit} {row} (id {item_id})"
