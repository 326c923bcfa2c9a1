"""The report's cards in page order, made one page at a time: a million items never all held as cards.

    deck = Deck.scan(cfg, manifest, rows)          # each item's status and credits, a batch of rows at a time
    deck.counts["done"], deck.credits, deck.digest
    deck.cards(0, 500, made)                       # the first page's cards; made(sub_manifest, rows) -> groups

Cards go review, failed, pending, done (cards.ORDER), each status by id, as `cards.cards` sorts
them: the scan keeps only an item's position in that order (one int), and a page's cards are made
from its items' rows, read in one batch, when the page is written. With `variants` the cards are
made in memory (`Deck.of`): an item's card is its variants' row, by_variant's view is in memory anyway.
"""
from __future__ import annotations

import dataclasses
import hashlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import chain

from pipeline.inputs.manifest import Manifest
from pipeline.outputs.cards import ORDER, Card
from pipeline.outputs.results import STATUS
from pipeline.store.checkpoint import Row
from pipeline.store.rowview import batches, fetch, rows_of, summary_of
from pipeline.version import installed_version

Made = Callable[[Manifest, dict[str, Row]], dict[str, list[Card]]]  # cards.cards over a page's items


@dataclasses.dataclass
class Deck:
    counts: Counter                    # cards per status
    tally: Counter                     # what the summary counts: items, or with variants each variant
    credits: int
    digest: str | None = None          # what every card is made of; None: not known (built in code, held items)
    _order: dict[str, array] = dataclasses.field(default_factory=dict)  # status -> item index (-1-k: invalid k)
    _manifest: Manifest | None = None
    _rows: Mapping[str, Row] | None = None
    _cards: list[Card] | None = None   # Deck.of: every card, in order

    @classmethod
    def of(cls, groups: dict[str, list[Card]], credits: int) -> "Deck":
        """A deck of cards made in memory (with variants)."""
        cards = list(chain.from_iterable(groups[status] for status in ORDER))
        tally = Counter({status: 0 for status in ORDER})
        tally.update(unit.status for card in cards for unit in (card.variants or (card,)))
        return cls(Counter({status: len(group) for status, group in groups.items()}), tally, credits, _cards=cards)

    @classmethod
    def scan(cls, cfg, manifest: Manifest, rows: Mapping[str, Row], extra: str = "") -> "Deck":
        """Every current item's status (as results.status_of), its position and the credits, read in batches."""
        items = manifest.items
        status_of_item = bytearray(len(items))  # index into ORDER
        code = {status: n for n, status in enumerate(ORDER)}
        digest = hashlib.sha256(f"{installed_version()}\n{cfg!r}\n{manifest.invalid!r}\n{extra}\n".encode())
        known = bool(manifest.sha256)
        digest.update((manifest.sha256 or "").encode())
        credits = 0
        position = 0
        if (summary := summary_of(rows)) is not None:  # every row summed up by SQLite: what each card shows
            digest.update(repr(summary).encode())
            known = known and not any(no_sha for *_, no_sha in summary)  # an input previewed by its stat
        else:
            known = False
        for chunk, found in batches(rows, items, ("state", "credits")):
            for item in chunk:
                values = found.get(item.id)
                if values is None:
                    status, known = "pending", False  # an input previewed by its stat: not in the digest
                else:
                    status = STATUS.get(values[0], "pending")
                    credits += values[1] or 0
                    known = known and status != "review"  # a held card shows a heat-map file
                status_of_item[position] = code[status]
                position += 1
        invalid_ids = [bad.id for bad in manifest.invalid if bad.id]
        found = fetch(rows, invalid_ids, ("credits",))  # current_ids: an invalid row's credits count too
        credits += sum(found[i][0] or 0 for i in invalid_ids if i in found)
        # Positions as 4-byte ints (an array, not a list of int objects: 8 MB less per million items).
        order: dict[str, array] = {status: array("i") for status in ORDER}
        for index in sorted(range(len(items)), key=lambda k: items[k].id):
            order[ORDER[status_of_item[index]]].append(index)
        del status_of_item
        if manifest.invalid:  # invalid rows are failed cards, by id among the failed items
            failed = [*sorted(order["failed"]), *range(-1, -1 - len(manifest.invalid), -1)]
            order["failed"] = array("i", sorted(failed, key=lambda k: _card_id(manifest, k)))
        counts = Counter({status: len(order[status]) for status in ORDER})
        return cls(counts, Counter(counts), credits, digest.hexdigest() if known else None, order, manifest, rows)

    def cards(self, start: int, stop: int, made: Made) -> list[Card]:
        """The cards at positions [start, stop) of the order, failures first."""
        if self._cards is not None:
            return self._cards[start:stop]
        assert self._manifest is not None and self._rows is not None
        picked: list[int] = []
        offset = 0
        for status in ORDER:
            entries = self._order[status]
            lo, hi = max(start - offset, 0), min(stop - offset, len(entries))
            if lo < hi:
                picked += entries[lo:hi]
            offset += len(entries)
        manifest = self._manifest
        sub = dataclasses.replace(manifest, items=[manifest.items[k] for k in picked if k >= 0],
                                  invalid=[manifest.invalid[-1 - k] for k in picked if k < 0])
        groups = made(sub, rows_of(self._rows, [item.id for item in sub.items]))
        return list(chain.from_iterable(groups[status] for status in ORDER))


def _card_id(manifest: Manifest, k: int) -> str:
    if k >= 0:
        return manifest.items[k].id
    bad = manifest.invalid[-1 - k]
    return bad.id or f"row {bad.row}"
