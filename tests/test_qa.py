"""The fidelity gate's workers (run/qa.py): one worker for a run whose scores keep up, a second only for a
backlog worth its start-up, outputs that arrive together sent together, and one bad score failing one item."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from helpers import write_catalog
from pipeline.inputs.config import load_config
from pipeline.run import qa, qa_worker
from pipeline.run.states import State
from pipeline.sandbox import alter, products


@pytest.fixture
def pictures(tmp_path) -> list[tuple[Path, bytes, bool]]:
    """(source, output, faithful): drawn products, each output its source 1.25x larger, every third altered."""
    made = []
    for i in range(12):
        source = products.draw(tmp_path / f"p{i}.jpg", i, size=128)
        kind = alter.ALTERATIONS[i % 4] if i % 3 == 0 else None
        made.append((source, alter.fast(source.read_bytes(), alteration=kind, scale=1.25, quality=85), kind is None))
    return made


@pytest.fixture
def cfg(tmp_path):
    return load_config(write_catalog(tmp_path / "catalog", 1, base_url="http://127.0.0.1:9/external/api"),
                       env={"LIGHTX_API_KEY": "k"})


class Counted(qa.ProcessPoolExecutor):
    """The pool, counting the messages the scorer sends it."""

    sent: list[int] = []

    def submit(self, fn, jobs, *args):
        Counted.sent.append(len(jobs))
        return super().submit(fn, jobs, *args)


async def _verdicts(scorer: qa.Scorer, pictures) -> list[dict]:
    return await asyncio.gather(*(scorer.verdict(source, output, f"{i:064x}")
                                  for i, (source, output, _) in enumerate(pictures)))


def test_outputs_that_arrive_together_go_to_one_worker_in_few_messages(cfg, pictures, monkeypatch):
    monkeypatch.setattr(qa, "ProcessPoolExecutor", Counted)
    Counted.sent = []

    async def scored():
        async with qa.Scorer(cfg, workers=2) as scorer:
            verdicts = await _verdicts(scorer, pictures)
            return verdicts, scorer.workers

    verdicts, workers = asyncio.run(scored())
    states = [v["state"] for v in verdicts]
    assert states == [State.DONE if faithful else State.REVIEW for _, _, faithful in pictures]
    # a dozen pictures score faster than a worker starts: the second is not worth its start-up
    assert workers == 1
    # one at once, one queued behind it, then the other ten in one message
    assert sum(Counted.sent) == len(pictures) and len(Counted.sent) <= 3, Counted.sent


def test_a_second_worker_starts_only_once_the_backlog_is_worth_it(cfg, pictures, monkeypatch):
    monkeypatch.setattr(qa, "SECOND_WORKER_BACKLOG_S", 0.0)  # any backlog is worth a second worker

    async def scored():
        async with qa.Scorer(cfg, workers=2) as scorer:
            first = await scorer.verdict(pictures[1][0], pictures[1][1], "a" * 64)
            alone = scorer.workers  # nothing waited: still one
            await _verdicts(scorer, pictures)
            return first, alone, scorer.workers

    first, alone, workers = asyncio.run(scored())
    assert first["state"] == State.DONE and first["fidelity"] > 0.7
    assert (alone, workers) == (1, 2)


def test_a_bug_scoring_one_output_fails_that_item_alone(tmp_path, pictures, monkeypatch):
    from pipeline.media import fidelity

    real = fidelity.measure

    def measure(source, output, **kw):
        if output == pictures[2][1]:
            raise ZeroDivisionError("a bug")
        return real(source, output, **kw)

    monkeypatch.setattr(fidelity, "measure", measure)
    jobs = [(str(source), output, None) for source, output, _ in pictures[:4]]
    answers = qa_worker.score_all(jobs, 0.7)
    assert isinstance(answers[2], RuntimeError) and "ZeroDivisionError: a bug" in str(answers[2])
    assert [a[0]["fidelity"] > 0.7 for i, a in enumerate(answers) if i != 2] == [False, True, False]


def test_a_bug_scoring_one_output_delivers_it_unscored_and_fails_no_item(cfg, pictures, monkeypatch, caplog):
    """The picture is paid for: a failed item would be bought again by the next run. So a bug's answer
    for one output (a score_all RuntimeError) delivers it done, unscored, the bug on its row."""
    import helpers

    monkeypatch.setattr(qa.qa_worker, "score_all", helpers.score_all_with_a_bug)

    async def scored() -> list[dict]:
        async with qa.Scorer(cfg, workers=1) as scorer:
            return await _verdicts(scorer, pictures[:4])

    verdicts = asyncio.run(scored())
    bugged = verdicts[1]
    assert bugged["state"] == State.DONE and bugged["fidelity"] is None
    assert bugged["fidelity_note"] == "fidelity not measured: the score failed: ZeroDivisionError: a bug"
    assert [v["fidelity"] is not None for v in verdicts] == [True, False, True, True]
    assert sum("delivered unscored" in r.message for r in caplog.records) == 1


def test_a_worker_leaves_ctrl_c_to_the_run(cfg, pictures):
    # Ctrl-C reaches the whole process group: a worker that took it would die with a traceback on the
    # user's terminal, even while it still imports (spawned, before its initializer runs). It is started
    # with SIGINT ignored, and ignores it; the run ends its workers itself (Scorer.__aexit__).
    import os
    import signal

    async def signalled() -> list[dict]:
        async with qa.Scorer(cfg, workers=1) as scorer:
            first = asyncio.ensure_future(scorer.verdict(pictures[0][0], pictures[0][1], "0" * 64))
            await asyncio.sleep(0)
            (starting,) = scorer._pools[0]._processes  # started by the first submit; importing now
            os.kill(starting, signal.SIGINT)
            verdicts = [await first]
            os.kill(starting, signal.SIGINT)
            verdicts.append(await scorer.verdict(pictures[1][0], pictures[1][1], "1" * 64))
            assert list(scorer._pools[0]._processes) == [starting]  # the same worker, still serving
            return verdicts

    assert all(v["fidelity"] is not None for v in asyncio.run(signalled()))


def test_workers_that_keep_dying_are_not_started_again(cfg, pictures, monkeypatch, caplog):
    # A worker that dies at start (an unguarded library script re-imported by spawn, or no memory) would
    # otherwise be replaced at every batch: a spawn, 0.7 s of imports and a warning per batch, all run.
    import helpers

    started: list[int] = []

    class Pool(qa.ProcessPoolExecutor):
        def __init__(self, *args, **kw):
            started.append(1)
            super().__init__(*args, **kw)

    monkeypatch.setattr(qa, "ProcessPoolExecutor", Pool)

    async def one_at_a_time() -> list[dict]:
        async with qa.Scorer(cfg, workers=1) as scorer:
            scorer._initializer = helpers.die_at_start
            return [await scorer.verdict(source, output, f"{i:064x}")
                    for i, (source, output, _) in enumerate(pictures[:6])]

    verdicts = asyncio.run(one_at_a_time())
    assert len(started) == qa.MAX_DEATHS
    assert all(v["fidelity"] is None and v["state"] == State.DONE for v in verdicts)
    assert "died 2 times in a row" in verdicts[-1]["fidelity_note"] and "__main__" in verdicts[-1]["fidelity_note"]
    assert sum("delivered unscored" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("fails", ["every start", "the first start"])
def test_a_worker_that_cannot_be_started_fails_no_item_and_hangs_none(cfg, pictures, monkeypatch, caplog, fails):
    """No process can be started (out of memory, a pod's pids limit): the outputs sent together, and
    those arriving meanwhile, are delivered unscored, not left waiting forever; after MAX_DEATHS such
    failures no worker is tried again. A limit that passes lets the next worker score."""
    import errno

    tries: list[int] = []

    class Pool(qa.ProcessPoolExecutor):
        def submit(self, *args, **kw):
            tries.append(1)
            if fails == "every start" or len(tries) == 1:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            return super().submit(*args, **kw)

    monkeypatch.setattr(qa, "ProcessPoolExecutor", Pool)

    async def together() -> list[dict]:
        async with qa.Scorer(cfg, workers=1) as scorer:
            return await asyncio.wait_for(asyncio.gather(*(scorer.verdict(source, output, f"{i:064x}")
                                                           for i, (source, output, _) in enumerate(pictures))), 60)

    verdicts = asyncio.run(together())
    assert len(verdicts) == len(pictures) and all(v["state"] in (State.DONE, State.REVIEW) for v in verdicts)
    if fails == "every start":
        assert len(tries) == qa.MAX_DEATHS
        assert all(v["fidelity"] is None for v in verdicts)
        assert "no worker could be started" in verdicts[0]["fidelity_note"]
        assert "died 2 times in a row" in verdicts[-1]["fidelity_note"]
    else:
        assert verdicts[0]["fidelity"] is None and "Resource temporarily unavailable" in verdicts[0]["fidelity_note"]
        assert verdicts[-1]["fidelity"] is not None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a FIFO stands for a source on a hung mount")
def test_a_stuck_worker_is_killed_and_its_outputs_delivered_unscored(cfg, pictures, monkeypatch, tmp_path):
    """A source whose read never returns (a hung network mount; here a FIFO nobody writes): after
    STUCK_S the worker is killed, the outputs sent to it are delivered with a note, the run goes on,
    and the next output is scored by a new worker. One stuck worker is one death, not one per batch."""
    hung = tmp_path / "hung.jpg"
    os.mkfifo(hung)

    async def with_one_stuck() -> tuple[dict, list[dict], dict, qa.Scorer]:
        async with qa.Scorer(cfg, workers=1) as scorer:
            warm = await scorer.verdict(*pictures[0][:2], "0" * 64)  # the worker's start-up is not timed below
            monkeypatch.setattr(qa, "STUCK_S", 3.0)  # for the next batch sent only
            stuck = [asyncio.ensure_future(scorer.verdict(hung, pictures[1][1], "1" * 64))]
            await asyncio.sleep(0)  # sent alone: the worker was idle
            monkeypatch.setattr(qa, "STUCK_S", 300.0)
            stuck += [asyncio.ensure_future(scorer.verdict(source, output, f"{i:064x}"))
                      for i, (source, output, _) in enumerate(pictures[2:5], start=2)]
            verdicts = await asyncio.wait_for(asyncio.gather(*stuck), 120)
            after = await asyncio.wait_for(scorer.verdict(*pictures[5][:2], "5" * 64), 120)
            return warm, verdicts, after, scorer

    warm, verdicts, after, scorer = asyncio.run(with_one_stuck())
    assert warm["fidelity"] is not None
    assert "had not answered 3 s after a batch" in verdicts[0]["fidelity_note"] and verdicts[0]["state"] == State.DONE
    # Those queued behind it in the same worker died with it (a note each); those still waiting here
    # went to the new worker.
    assert all(v["fidelity"] is not None or (v["state"] == State.DONE and "died" in v["fidelity_note"])
               for v in verdicts[1:])
    assert after["fidelity"] is not None and scorer._gave_up is None  # scored by a new worker: the old one is dead


def test_workers_ended_by_the_run_itself_are_not_reported_as_deaths(cfg, pictures, caplog):
    # Ctrl-C: the items are cancelled and __aexit__ ends the workers mid-batch. Their broken pool is the
    # run's own doing, not "a worker process died" (nor, twice, out of memory or a missing guard).
    async def stopped_early() -> qa.Scorer:
        scorer = qa.Scorer(cfg, workers=1)
        async with scorer:
            waiting = [asyncio.ensure_future(scorer.verdict(source, output, f"{i:064x}"))
                       for i, (source, output, _) in enumerate(pictures)]
            await asyncio.sleep(0)  # sent to the worker, which is still starting
            assert scorer._scored > 0
            for task in waiting:
                task.cancel()
        for _ in range(600):  # until the broken batch has been answered (at most a minute)
            if scorer._scored == 0:
                break
            await asyncio.sleep(0.1)
        return scorer

    scorer = asyncio.run(stopped_early())
    assert scorer._scored == 0 and scorer._deaths == 0 and scorer._gave_up is None
    assert not [r for r in caplog.records if "died" in r.getMessage()]


def test_a_worker_starts_without_numpys_unused_submodules_and_scores_as_before(tmp_path, pictures):
    """SciPy clones NumPy's namespace, which would import f2py, testing, polynomial... at each worker's
    start (0.17 s of CPU). A started worker has none of them, and scores exactly as a plain import does."""
    import json
    import subprocess
    import sys

    jobs = [(str(source), str(tmp_path / f"out{n}.jpg"), None) for n, (source, _, _) in enumerate(pictures[:4])]
    for (_, output, _), (_, data, _) in zip(jobs, pictures):
        Path(output).write_bytes(data)
    code = """if True:
        import json, sys
        from pipeline.run import qa_worker
        if sys.argv[1] == "started":
            qa_worker.start()
        answers = qa_worker.score_all(json.loads(sys.argv[2]), 0.7)
        print(json.dumps({"rows": [row for row, _ in answers],
                          "loaded": sorted(m for m in sys.modules if m.split(".")[:2] in [["numpy", n] for n in
                                                                                           qa_worker.LAZY_SUBMODULES])}))
    """
    runs = {how: json.loads(subprocess.run([sys.executable, "-c", code, how, json.dumps(jobs)], check=True,
                                           capture_output=True, text=True).stdout) for how in ("started", "plain")}
    assert runs["started"]["rows"] == runs["plain"]["rows"] and len(runs["plain"]["rows"]) == 4
    assert all(row["fidelity"] is not None for row in runs["plain"]["rows"])
    assert not {"numpy.f2py", "numpy.testing", "numpy.polynomial"} & set(runs["started"]["loaded"])
    assert {"numpy.f2py", "numpy.testing", "numpy.polynomial"} <= set(runs["plain"]["loaded"])  # what it saves
