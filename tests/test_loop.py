"""The drive's event loop (run/loop.py): uvloop's where it is installed, asyncio's own on request, and a
run on either spends the same."""
from __future__ import annotations

import asyncio
import json

import pytest

from helpers import write_catalog
from pipeline.cli import main
from pipeline.run import loop

uvloop = pytest.importorskip("uvloop")  # a dependency on Linux and macOS (pyproject.toml)


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_the_drive_runs_on_uvloop_where_it_is_installed(monkeypatch):
    monkeypatch.delenv(loop.ENV, raising=False)
    assert loop.run(_loop_type()) is uvloop.Loop
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)  # a caller's policy is left alone


def test_pipeline_event_loop_asyncio_runs_on_asyncios_own(monkeypatch):
    monkeypatch.setenv(loop.ENV, "asyncio")
    assert loop.factory() is None
    assert not issubclass(loop.run(_loop_type()), uvloop.Loop)


@pytest.mark.parametrize("choice", ["", "asyncio"])
def test_a_run_on_either_loop_buys_each_item_once(sandbox, catalog_dir, capsys, monkeypatch, choice):
    monkeypatch.setenv(loop.ENV, choice)
    config = write_catalog(catalog_dir, 6, base_url=sandbox.base_url)
    assert main(["run", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["counts"]["done"] == 6 and doc["credits"] == 6
    assert main(["run", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["credits"] == 0
    assert sandbox.ledger_snapshot()["credits"] == 6
