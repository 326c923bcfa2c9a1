"""The planner's decisions, called directly: what each item needs before anything is sent."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.inputs.manifest import Item
from pipeline.plan.planner import failed_rows, fingerprint, plan
from pipeline.plan.sources import file_sha256
from pipeline.plan.steps import Where
from pipeline.run.states import State
from pipeline.store.checkpoint import Row

SHA = "a" * 64


def item(i: str = "a", prompt: str = "a mug on marble", output: str | None = None) -> Item:
    return Item(id=i, image=f"{i}.jpg", prompt=prompt, row=2, image_path=Path(f"/nowhere/{i}.jpg"),
                output_name=output or f"{i}.jpg")


def decide(tmp_path, row: Row | None, *, it: Item | None = None, **kw):
    it = it or item()
    rows = {row.id: row} if row else {}
    kw = {"api_kind": "lightx", "api_id": "https://api", **kw}
    return plan([it], rows, {it.id: SHA}, Where(output_dir=tmp_path, **kw))


def done_row(tmp_path, fp: str, name: str = "a.jpg", **kw) -> Row:
    out = tmp_path / name
    out.write_bytes(b"\xff\xd8\xffjpeg")
    st = out.stat()
    return Row(id="a", fingerprint=fp, state=State.DONE, image_sha256=SHA, output_path=name,
               output_sha256=file_sha256(out), output_size=st.st_size, output_mtime_ns=st.st_mtime_ns, **kw)


FP = fingerprint(SHA, "a mug on marble", "lightx")


def test_a_new_item_is_one_pending_job_and_one_credit(tmp_path):
    p = decide(tmp_path, None)
    assert p.counts == {"new": 1} and p.credits_needed == 1
    (it, row), = p.jobs
    assert row.state == State.PENDING and row.fingerprint == FP and p.writes == [row]


def test_an_unchanged_done_item_costs_nothing_and_writes_nothing(tmp_path):
    p = decide(tmp_path, done_row(tmp_path, FP))
    assert p.counts == {"unchanged": 1} and not p.jobs and not p.writes and p.credits_needed == 0


def test_a_changed_prompt_is_bought_again_keeping_the_creation_time(tmp_path):
    old = done_row(tmp_path, FP, created_at=5.0)
    p = decide(tmp_path, old, it=item(prompt="a mug on slate"))
    (_, row), = p.jobs
    assert p.counts == {"changed": 1} and row.state == State.PENDING and row.created_at == 5.0
    assert row.fingerprint == fingerprint(SHA, "a mug on slate", "lightx")


def test_the_url_is_not_part_of_identity_but_the_kind_of_api_is(tmp_path):
    assert decide(tmp_path, done_row(tmp_path, FP), api_id="http://localhost/x/").counts == {"unchanged": 1}
    assert decide(tmp_path, done_row(tmp_path, FP), api_kind="sandbox").counts == {"changed": 1}


def test_an_order_in_flight_is_resumed_never_resubmitted(tmp_path):
    row = Row(id="a", fingerprint=FP, state=State.SUBMITTED, order_id="o1", api_id="https://api")
    p = decide(tmp_path, row)
    assert p.counts == {"resumable": 1} and p.jobs[0][1] is row and p.in_flight == 1
    assert p.credits_needed == 0 and not p.writes


def test_a_gone_output_with_a_live_link_is_downloaded_again_through_the_table(tmp_path):
    row = done_row(tmp_path, FP, api_id="https://api", output_url="https://cdn/a.jpg", credits=1)
    (tmp_path / "a.jpg").unlink()
    p = decide(tmp_path, row)
    (_, again), = p.jobs
    assert p.counts == {"repair": 1} and again.state == State.GENERATED and again.credits == 1
    assert row.state == State.DONE  # the checkpoint's row object is replaced, not edited
    assert p.credits_needed == 0


def test_a_gone_output_from_another_api_instance_is_ordered_again(tmp_path):
    row = done_row(tmp_path, FP, api_id="https://old", output_url="https://cdn/a.jpg")
    (tmp_path / "a.jpg").unlink()
    p = decide(tmp_path, row)
    assert p.counts == {"repair": 1} and p.jobs[0][1].state == State.PENDING and p.credits_needed == 1


def test_an_edited_output_file_is_repaired(tmp_path):
    row = done_row(tmp_path, FP, api_id="https://api", output_url="https://cdn/a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xffother")
    assert decide(tmp_path, row).counts == {"repair": 1}


def test_failed_items_are_retried_and_forced_ones_start_afresh(tmp_path):
    failed = Row(id="a", fingerprint=FP, state=State.FAILED, error="x", attempts=2)
    p = decide(tmp_path, failed)
    assert p.counts == {"retry": 1} and p.jobs[0][1].state == State.PENDING and p.jobs[0][1].attempts == 2
    assert decide(tmp_path, done_row(tmp_path, FP), force=True).counts == {"forced": 1}


def test_a_gone_sandbox_takes_its_uploads_and_orders_with_it(tmp_path):
    fp = fingerprint(SHA, "a mug on marble", "sandbox")
    row = Row(id="a", fingerprint=fp, state=State.SUBMITTED, order_id="o1", api_id="sandbox@1")
    p = decide(tmp_path, row, api_kind="sandbox", api_id="sandbox@2", sandbox=True)
    assert p.counts == {"restart": 1} and p.jobs[0][1].state == State.PENDING


def test_a_gone_sandbox_takes_its_output_links_with_it(tmp_path):
    """A --sandbox run killed before a download: the next run's sandbox cannot serve that link."""
    fp = fingerprint(SHA, "a mug on marble", "sandbox")
    row = Row(id="a", fingerprint=fp, state=State.GENERATED, order_id="o1", api_id="sandbox@1",
              output_url="http://127.0.0.1:1/output/o1.jpg")
    p = decide(tmp_path, row, api_kind="sandbox", api_id="sandbox@2", sandbox=True)
    assert p.counts == {"restart": 1} and p.jobs[0][1].state == State.PENDING


def test_a_schema_1_fingerprint_made_with_the_base_url_is_adopted(tmp_path):
    old = done_row(tmp_path, fingerprint(SHA, "a mug on marble", "https://api"))
    p = decide(tmp_path, old, legacy_kind="https://api")
    assert p.counts == {"unchanged": 1} and p.writes[0].fingerprint == FP and not p.jobs


def test_only_narrows_the_plan(tmp_path):
    items = [item("a"), item("b")]
    p = plan(items, {}, {"a": SHA, "b": SHA}, Where(output_dir=tmp_path, api_kind="lightx", api_id="x",
                                                   only=frozenset({"b"})))
    assert [it.id for it, _ in p.jobs] == ["b"]


def test_what_is_paid_for_is_collected_first(tmp_path):
    items = [item(c) for c in "abc"]
    rows = {"a": Row(id="a", fingerprint=fingerprint(SHA, items[0].prompt, "lightx")),
            "b": Row(id="b", fingerprint=fingerprint(SHA, items[1].prompt, "lightx"), state=State.GENERATED,
                     output_url="u"),
            "c": Row(id="c", fingerprint=fingerprint(SHA, items[2].prompt, "lightx"), state=State.SUBMITTED)}
    p = plan(items, rows, dict.fromkeys("abc", SHA), Where(output_dir=tmp_path, api_kind="lightx", api_id="x"))
    assert [it.id for it, _ in p.jobs] == ["b", "c", "a"]


@pytest.mark.parametrize("state", [State.SUBMITTED, State.GENERATED])
def test_an_invalid_item_with_an_order_that_may_charge_is_not_overwritten(state):
    rows = {"a": Row(id="a", fingerprint="f", state=state, order_id="o")}
    assert failed_rows([("a", "image gone")], set(), rows) == []


def test_invalid_items_are_recorded_once_each_and_never_over_a_valid_one():
    out = failed_rows([("a", "bad"), ("a", "worse"), (None, "no id"), ("ok", "x")], {"ok"}, {})
    assert [(r.id, r.state, r.error) for r in out] == [("a", State.FAILED, "bad")]


def test_fingerprints_are_pinned_so_that_a_finished_catalog_stays_finished():
    """A change of the formula would buy every item of every finished catalog again."""
    prompt = "a red mug on a white marble counter"
    assert fingerprint("0" * 64, prompt, "lightx") == "0f9a65b17370b4ac315793a9297310561616e7d8726ba7b56148c320b866b64f"
    assert fingerprint("0" * 64, prompt, "sandbox") == "9a5fcf889a07de7f722e2f9b6c0c64258ee2f69e178ee48db957c90dcc6a5fef"
    assert fingerprint("f" * 64, prompt, "lightx") == "062a334f6b4595ada21131a38a8244357366a00ccf30ea3b91e62b6feb9da049"


def test_a_batch_of_new_items_costs_one_checkpoint_read_and_a_stored_one_its_row(tmp_path, monkeypatch):
    """A shard's dry run of 125,000 new items made a query per item after its batch read (1.2 of 6.5 s)."""
    from pipeline.store.checkpoint import Checkpoint
    from pipeline.store.rowview import RowView
    ckpt = Checkpoint.open(tmp_path / "checkpoint.sqlite")
    try:
        ckpt.insert([Row(id="b", fingerprint="old", state=State.FAILED, error="no")])
        reads = []
        query = ckpt.query
        monkeypatch.setattr(ckpt, "query", lambda sql, params: reads.append(sql) or query(sql, params))
        items = [item(f"n{k}") for k in range(40)] + [item("b")]
        p = plan(items, RowView(ckpt), {i.id: SHA for i in items},
                 Where(output_dir=tmp_path, api_kind="lightx", api_id="https://api"))
    finally:
        ckpt.close()
    assert p.counts == {"new": 40, "changed": 1}
    assert len(reads) == 2 and "IN (" in reads[0]  # the batch, then the one stored row whole
