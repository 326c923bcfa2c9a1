"""The library's front door: the example catalog through names from `import pipeline` alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from importlib.resources import files
from pathlib import Path

import pytest

import pipeline
from helpers import write_catalog
from pipeline.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def example(tmp_path, monkeypatch) -> Path:
    """A copy of configs/ (its outputs go to the copy's ../outputs); no key, no base URL set."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.delenv("LIGHTX_API_KEY", raising=False)
    monkeypatch.delenv("LIGHTX_BASE_URL", raising=False)
    return tmp_path / "configs" / "catalog.yaml"


def _ids(config: Path) -> list[str]:
    return [line.split(",")[0] for line in (config.parent / "catalog.csv").read_text().splitlines()[1:]]


def test_the_example_catalog_through_the_library_alone(example):
    overview = pipeline.validate(example)
    assert isinstance(overview, pipeline.Overview)
    assert (overview.items, overview.invalid, overview.credits, overview.problems) == (10, 0, 10, ())

    threads = threading.active_count()
    result = pipeline.run(example, sandbox=True, quiet=True)
    assert isinstance(result, pipeline.RunResult)
    assert (result.exit_code, result.counts["done"], result.credits) == (0, 10, 10)
    assert threading.active_count() == threads  # the private sandbox is gone with the run
    outputs = example.parent.parent / "outputs"
    assert Path(result.results_path) == outputs / "results.csv"
    assert sorted(path.stem for path in outputs.glob("*.jpg")) == sorted(_ids(example))

    again = pipeline.run(example, sandbox=True, quiet=True)
    assert (again.exit_code, again.credits, again.submits) == (0, 0, 0)
    assert pipeline.run(example, sandbox=True, dry_run=True).plan.kinds()["unchanged"] == 10

    doc = pipeline.status(example)
    assert doc["counts"]["done"] == 10 and doc["credits"]["all_time"] == 10 and doc["total_runs"] == 2
    (outputs / "report.html").unlink()
    assert pipeline.report(example) == outputs / "report.html" and (outputs / "report.html").is_file()


def test_a_shard_and_only(example):
    result = pipeline.run(example, sandbox=True, quiet=True, shard="1/2", only=())
    shard = pipeline.Shard.parse("1/2")
    assert 0 < result.overview.items == sum(map(shard.owns, _ids(example))) == result.counts["done"] < 10
    with pytest.raises(pipeline.ConfigError, match="--shard 2/2: K must be at least 0 and below N"):
        pipeline.run(example, sandbox=True, shard="2/2")
    with pytest.raises(pipeline.ConfigError, match="no such item id in the manifest: nope"):
        pipeline.run(example, sandbox=True, only=["nope"])


def test_invalid_items_raise_unless_skipped(example):
    csv = example.parent / "catalog.csv"
    csv.write_text(csv.read_text() + "sku-gone,images/missing.jpg,a mug,a table\n")
    overview = pipeline.validate(example)
    assert (overview.items, overview.invalid) == (10, 1)
    where = example.parent
    assert overview.problems == (f"{where}/catalog.csv row 12 (id sku-gone): image 'images/missing.jpg' not found "
                                 f"({where}/images/missing.jpg)",)
    with pytest.raises(pipeline.InvalidItems) as raised:
        pipeline.run(example, sandbox=True)
    assert (raised.value.items, raised.value.invalid, raised.value.exit_code) == (10, 1, 2)
    assert raised.value.problems == [*overview.problems, "nothing was sent; fix these or pass --skip-invalid"]
    told = []
    result = pipeline.run(example, sandbox=True, quiet=True, skip_invalid=True, on_skipped=told.append)
    assert [bad.id for bad in told[0]] == ["sku-gone"]
    assert (result.exit_code, result.counts["done"], result.counts["failed"]) == (1, 10, 1)


def test_without_a_key_the_run_says_how_to_get_one(example):
    with pytest.raises(pipeline.ConfigError, match="no API key: set LIGHTX_API_KEY"):
        pipeline.run(example)


def test_the_cli_calls_the_library_once_per_command(sandbox, catalog_dir, monkeypatch, capsys):
    config = write_catalog(catalog_dir, 2, base_url=sandbox.base_url)
    calls = []
    for name in ("validate", "run", "status", "report"):
        real = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or
                            _real(*a, **kw))
    for argv in (["validate"], ["run", "--quiet"], ["status"], ["report"]):
        main([argv[0], str(config), *argv[1:]])
        assert calls == [argv[0]]
        calls.clear()
    assert capsys.readouterr().out.count("\n") >= 4


def test_the_error_tree_and_the_types_are_exported():
    assert issubclass(pipeline.InvalidItems, pipeline.ConfigError)
    for name in ("ConfigError", "LockError", "CheckpointError", "OutputError", "FatalApiError", "AuthError",
                 "CreditsError", "ApiUnreachable", "WrongApi"):
        assert issubclass(getattr(pipeline, name), pipeline.PipelineError), name
    assert set(pipeline.__all__) <= set(dir(pipeline))
    assert all(getattr(pipeline, name) is not None for name in pipeline.__all__)
    assert files("pipeline").joinpath("py.typed").is_file()
    assert files("pipeline.schemas").joinpath("config.schema.json").is_file()


def test_import_pipeline_is_cheap_and_run_stays_the_function():
    # The engine (aiohttp, PIL, the checkpoint) is imported when a function is called, not before; and
    # the subpackage pipeline.run, loaded later, does not take the function's name.
    code = ("import sys, pipeline; assert 'pipeline.run.engine' not in sys.modules, 'engine imported'; "
            "import pipeline.run.engine, pipeline.library; assert pipeline.run is pipeline.library.run")
    subprocess.run([sys.executable, "-c", code], check=True)
