"""The state machine: one table of moves, enforced by Checkpoint.save before anything is written."""
from __future__ import annotations

import sqlite3

import pytest

from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.run.stages import STAGES
from pipeline.run.states import TRANSITIONS, IllegalTransition, State, check_move


@pytest.fixture
def checkpoint(tmp_path):
    ckpt = Checkpoint.open(tmp_path / "checkpoint.sqlite")
    yield ckpt
    ckpt.close()


def stored(ckpt: Checkpoint, item_id: str) -> tuple:
    ckpt.flush()
    with sqlite3.connect(ckpt.path) as conn:
        return conn.execute("SELECT state, order_id FROM items WHERE id = ?", (item_id,)).fetchone()


def test_every_state_but_the_last_two_has_a_stage_and_a_way_forward():
    # review waits for a person (`pipeline review`), not for a stage
    assert set(STAGES) == set(State) - {State.DONE, State.FAILED, State.REVIEW}
    assert {b for a, b in TRANSITIONS if a == State.REVIEW} == {State.DONE, State.PENDING, State.GENERATED}
    for state in STAGES:
        assert any(a == state and b != State.FAILED for a, b in TRANSITIONS), state
    assert not any(a == State.FAILED for a, _ in TRANSITIONS)  # the planner starts those afresh
    # from done, only the planner's repair: download again while the output link still works
    assert [move for move in TRANSITIONS if move[0] == State.DONE] == [(State.DONE, State.GENERATED)]


@pytest.mark.parametrize("move", sorted(TRANSITIONS), ids=lambda m: f"{m[0]}-{m[1]}")
def test_every_move_in_the_table_is_saved(checkpoint, move):
    row = Row(id="a", fingerprint="f", state=move[0])
    checkpoint.insert([row])
    checkpoint.save(row, state=move[1])
    assert stored(checkpoint, "a")[0] == move[1]


@pytest.mark.parametrize("move", [(State.PENDING, State.SUBMITTED), (State.DONE, State.PENDING),
                                  (State.FAILED, State.UPLOADED), (State.UPLOADED, State.DONE),
                                  (State.PENDING, "uplaoded")], ids=lambda m: f"{m[0]}-{m[1]}")
def test_a_move_not_in_the_table_raises_before_anything_is_written(checkpoint, move):
    row = Row(id="a", fingerprint="f", state=move[0])
    checkpoint.insert([row])
    with pytest.raises(IllegalTransition):
        checkpoint.save(row, state=move[1], order_id="o1")
    assert stored(checkpoint, "a") == (move[0], None) and row.state == move[0]
    checkpoint.save(row, order_id="o2")  # the checkpoint still works
    assert stored(checkpoint, "a") == (move[0], "o2")


def test_an_unknown_field_raises_and_the_checkpoint_goes_on(checkpoint):
    row = Row(id="a", fingerprint="f")
    checkpoint.insert([row])
    with pytest.raises(TypeError, match="order_idd"):
        checkpoint.save(row, order_idd="o1")
    checkpoint.save(row, state=State.UPLOADED, image_url="http://cdn/a.jpg")
    assert stored(checkpoint, "a") == ("uploaded", None)


def test_rows_have_no_room_for_misspelt_fields():
    with pytest.raises(AttributeError):
        Row(id="a", fingerprint="f").order_idd = "o1"


def test_states_are_their_strings_for_sqlite_and_old_rows():
    assert State.SUBMITTED == "submitted" and STAGES["submitted"] is STAGES[State.SUBMITTED]
    check_move("submitted", "generated")  # rows read back from SQLite hold plain strings
