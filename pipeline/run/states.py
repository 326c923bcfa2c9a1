"""An item's states and every move between them, with its reason: the one table the checkpoint enforces.

    pending --upload--> uploaded --submit--> submitted --poll--> generated --download--> done
       ^                 |   ^                   |                   |
       +-- re-upload ----+   +-- failed order ---+                   |
       ^                     +-------- output link gone -------------+
       +----------------- output link gone, no imageUrl -------------+
    any state but done --item error--> failed
    generated --download, fidelity below qa.min_fidelity--> review --approve--> done
                                                              +----reject--> pending (bought again)
    done --repair: output file gone, link still valid--> generated   (the planner)

`Checkpoint.save` refuses a move that is not in TRANSITIONS, at once, as a programming error: a
misspelt or forgotten state would otherwise leave an item pending for good. Otherwise the planner
starts an item afresh (new, changed, forced, retry, restart, repair without a link): a new `pending`
row for its fingerprint, keeping only its id, creation time and attempt count; that is not a move.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """An item's state in the checkpoint; a str, so SQLite stores it and it compares as its value."""

    PENDING = "pending"      # nothing uploaded for its current fingerprint
    UPLOADED = "uploaded"    # imageUrl known, no order yet
    SUBMITTED = "submitted"  # an order that may still complete and charge
    GENERATED = "generated"  # order active, output URL known, not yet on disk
    DONE = "done"            # output written and hashed
    FAILED = "failed"        # cannot go further without a change or a rerun
    REVIEW = "review"        # output written, held: its fidelity is below qa.min_fidelity (pipeline review)


# (from, to) -> why an item makes that move.
TRANSITIONS: dict[tuple[State, State], str] = {
    (State.PENDING, State.UPLOADED): "image uploaded, or an identical upload reused",
    (State.UPLOADED, State.SUBMITTED): "order created; its orderId is written in the same tick",
    (State.SUBMITTED, State.GENERATED): "order active: output URL known, one credit spent",
    (State.GENERATED, State.DONE): "output decoded, written and hashed",
    (State.UPLOADED, State.PENDING): "imageUrl too old, of another API instance, or refused: upload again",
    (State.SUBMITTED, State.UPLOADED): "order failed, which is free: order again",
    (State.GENERATED, State.UPLOADED): "output link gone: only a new order brings the picture back",
    (State.GENERATED, State.PENDING): "output link gone, and no imageUrl to order with: upload again",
    (State.DONE, State.GENERATED): "planner's repair: output file gone or changed, its link still valid",
    (State.GENERATED, State.REVIEW): "output written and hashed, its fidelity below qa.min_fidelity: held",
    (State.REVIEW, State.DONE): "approved in `pipeline review`",
    (State.REVIEW, State.PENDING): "rejected in `pipeline review`: the next run buys it again",
    (State.REVIEW, State.GENERATED): "planner's repair: a held output's file gone or changed, its link still valid",
    **{(state, State.FAILED): "the API or the image refused the item, or a bug at the item boundary"
       for state in (State.PENDING, State.UPLOADED, State.SUBMITTED, State.GENERATED)},
}


class IllegalTransition(AssertionError):
    """A move not in TRANSITIONS: a bug in the stage that asked for it, never bad input."""


def check_move(current: str, new: str) -> None:
    """Raise IllegalTransition unless `current` -> `new` is in the table (staying put always is)."""
    if current == new:
        return
    try:
        move = (State(current), State(new))
    except ValueError:
        raise IllegalTransition(f"unknown state in a move {current!r} -> {new!r}") from None
    if move not in TRANSITIONS:
        raise IllegalTransition(f"no move {current} -> {new} in pipeline.run.states.TRANSITIONS")
