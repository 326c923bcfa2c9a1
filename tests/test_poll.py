"""When orders are checked: the learnt order times, driven through the real submit and poll stages
against the sandbox, both on the clock of an event loop that jumps to its next timer whenever every
task waits (helpers.VirtualTimeLoop): 10-30 s orders take no real time, and every duration measured is
the schedule's own, however busy the machine is."""
from __future__ import annotations

import asyncio
import random
import statistics
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from helpers import jpeg_bytes, run_on_virtual_time
from pipeline.store.checkpoint import Checkpoint, Row
from pipeline.lightx.client import Client
from pipeline.lightx.wire import Wire
from pipeline.inputs.config import RetrySettings
from pipeline.sandbox import SANDBOX_KEY, SandboxOptions
from pipeline.sandbox.app import create_app, state_of
from pipeline.run.stages import Context, Job, poll, submit
from pipeline.run.timing import COLLECT, LAST_MARGIN, Clock, OrderTimes


class LoopClock(Clock):
    """The running event loop's clock (a VirtualTimeLoop's in these tests), for the sandbox and the stages."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()


async def drive(tmp_path, *, n: int, concurrency: int, interval: float,
                history=(), max_attempts: int | None = None, **sandbox) -> SimpleNamespace:
    """Submit and poll `n` orders, `concurrency` at a time, through submit.run and poll.run."""
    clock = LoopClock()
    app = create_app(SandboxOptions(fast=True, seed=3, **sandbox), clock=clock.now)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    cfg = SimpleNamespace(poll=SimpleNamespace(interval_s=interval, max_attempts=max_attempts),
                          retries=SimpleNamespace(failed_orders=0))
    ckpt = Checkpoint.open(tmp_path / f"checkpoint-{random.random()}.sqlite")
    times = OrderTimes(concurrency=concurrency, history=history, clock=clock)
    try:
        async with Wire() as session:
            client = Client(session, str(server.make_url("/external/api")), SANDBOX_KEY,
                            retries=RetrySettings(transient=3, backoff_base_s=0.01, backoff_max_s=0.05))
            data = jpeg_bytes((16, 16), "red", product=False)
            slot = await client.upload_slot(len(data), "image/jpeg")
            await client.put_image(slot.put_url, data, "image/jpeg")
            ctx = Context(cfg=cfg, client=client, ckpt=ckpt, api_id="sb", api_kind="sandbox",
                          source_dir=tmp_path, order_slots=asyncio.Semaphore(concurrency), times=times)
            rows = [Row(id=f"o{i}", fingerprint="f", state="uploaded", api_id="sb", image_url=slot.image_url,
                        uploaded_at=clock.now()) for i in range(n)]
            ckpt.insert(rows)
            gate = asyncio.Semaphore(concurrency)
            started = clock.now()

            async def one(row: Row) -> None:
                job = Job(SimpleNamespace(prompt="a mug on marble"), row)
                async with gate:
                    await submit.run(ctx, job)
                    try:
                        await poll.run(ctx, job)
                    except Exception as exc:  # noqa: BLE001 - Parked: counted below
                        row.error = str(exc)

            await asyncio.gather(*(one(r) for r in rows))
            wall = clock.now() - started
            ledger = state_of(app).ledger
    finally:
        ckpt.close()
        await server.close()
    return SimpleNamespace(rows=rows, wall=wall, ledger=ledger, times=times,
                           collected=sum(r.state == "generated" for r in rows),
                           checks=[r.polls for r in rows])


def median_error(times: OrderTimes, true_median: float) -> float:
    return times.quantile(0.5) / true_median


@pytest.mark.parametrize("hint", [15.0, 0.05], ids=["hint-30x-high", "hint-10x-low"])
def test_converges_within_a_round_whichever_way_the_hint_is_wrong(tmp_path, hint):
    # Orders take 0.35-0.65 s; checks at least 0.25 s apart; 4 rounds of 24 orders.
    got = run_on_virtual_time(drive(tmp_path, n=96, concurrency=24, interval=0.25,
                                    processing_s=0.5, processing_jitter=0.3, avg_response_time_s=hint))
    bound = 96 / 24 * (0.5 + 0.25)
    assert got.collected == 96 and got.ledger.overpolls == 0
    assert 0.7 < median_error(got.times, 0.5) < 1.4
    # Waiting for a 15 s hint would take 60 s; checking every 0.25 s from the start takes ~4 checks each.
    assert got.wall < 1.6 * bound, (got.wall, bound)
    assert statistics.mean(got.checks) < 3.2


def test_slow_orders_are_collected_in_the_run_without_overspending_checks(tmp_path):
    # LightX's own figures: orders 10-30 s, hint 15 s, 5 checks allowed at least 3 s apart.
    got = run_on_virtual_time(drive(tmp_path, n=128, concurrency=32, interval=3.0,
                                    processing_s=20.0, processing_jitter=0.5, avg_response_time_s=15.0))
    assert got.collected >= 0.99 * 128, [r.error for r in got.rows if r.state != "generated"][:3]
    assert got.ledger.overpolls == 0 and max(got.checks) <= 5, got.checks
    assert 0.8 < median_error(got.times, 20.0) < 1.25, got.times.quantile(0.5)


def test_a_hint_three_times_too_low_wastes_at_most_a_round(tmp_path):
    got = run_on_virtual_time(drive(tmp_path, n=64, concurrency=32, interval=0.3,
                                    processing_s=3.0, processing_jitter=0.1, avg_response_time_s=1.0))
    assert got.collected == 64 and got.ledger.overpolls == 0
    assert got.wall < 1.6 * (64 / 32 * (3.0 + 0.3))
    assert 0.8 < median_error(got.times, 3.0) < 1.25


def test_the_next_run_starts_from_the_last_runs_order_times_not_the_hint(tmp_path):
    first = run_on_virtual_time(drive(tmp_path, n=48, concurrency=24, interval=0.25,
                                      processing_s=0.5, processing_jitter=0.3, avg_response_time_s=15.0))
    history = [(r.seen_init_s or 0.0, r.checked_at - r.submitted_at) for r in first.rows]
    second = OrderTimes(concurrency=24, history=history)
    second.expect(15.0)  # ignored: there is history
    assert 0.7 < median_error(second, 0.5) < 1.4
    assert OrderTimes(concurrency=24).quantile(0.5) == pytest.approx(15.0, rel=0.1)  # nothing known


# -- the schedule's rules, on the estimate alone ------------------------------

def learnt(lo: float, hi: float, n: int = 400) -> OrderTimes:
    times = OrderTimes(concurrency=16)
    rng = random.Random(2)
    for i in range(n):
        t = rng.uniform(lo, hi)
        times.finished(str(i), t - 0.01, t + 0.01)
    return times


def test_the_allowed_checks_are_spread_to_the_last_one_at_almost_all_done():
    times = learnt(10, 30)
    first = times.next_check(0.0, 0.0, None, 5, 3.0)
    last = times.next_check(0.0, 26.0, 26.0, 1, 3.0)
    assert 12 < first < 16  # a fifth of the orders are done by then
    assert 29 < last <= 38 and times.quantile(COLLECT, above=26.0) * LAST_MARGIN == pytest.approx(last)


def test_checks_of_one_order_keep_the_interval_apart():
    times = learnt(0.35, 0.65)
    assert times.next_check(100.0, 0.5, 100.5, 3, 0.25) >= 100.75


def test_a_parked_order_waits_the_99th_percentile_after_its_last_check():
    times = learnt(10, 30)
    due = times.next_check(0.0, 40.0, 40.0, 0, 3.0)
    assert due == pytest.approx(40.0 + times.quantile(0.99))


def test_exploration_is_frequent_while_little_is_known_and_rare_later():
    fresh = OrderTimes(concurrency=20)
    first = [fresh.explore() for _ in range(20)]
    assert first[0] == 0.0 and sum(p is not None for p in first) in (4, 5, 6)  # a quarter, the first at once
    points = sorted(p for p in first if p is not None)
    assert points[-1] - points[0] > 0.5  # the explorers span the range, not one corner of it
    known = learnt(1, 2, n=2000)
    assert sum(known.explore() is not None for _ in range(4000)) / 4000 < 0.05


def test_an_early_check_that_finds_orders_done_pulls_a_slow_estimate_down():
    times = OrderTimes(concurrency=16)
    times.expect(15.0)
    for i in range(30):
        times.finished(str(i), 0.0, 1.0)  # explorers: done within 1 s
    assert times.quantile(0.5) < 1.0


def test_with_nothing_known_the_first_check_goes_no_later_than_the_hint():
    times = OrderTimes(concurrency=8)
    times.expect(2.0)
    assert times.next_check(0.0, 0.0, None, 5, 3.0) <= 2.0
    for i in range(5):  # once orders are seen, the plan is the estimate's: later than a hint that is low
        times.finished(str(i), 2.5, 2.6)
    assert times.next_check(0.0, 0.0, None, 5, 3.0) > 2.5
