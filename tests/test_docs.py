"""Meta-tests: the README, the generated config reference in docs/ and the CLI's --help cannot drift apart."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from pipeline.cli import build_parser
from pipeline.inputs.docs import BEGIN, END, config_reference

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_config_reference_is_generated_from_the_schema():
    section = CONFIGURATION.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == config_reference(), "run `python -m pipeline.inputs.docs docs/configuration.md`"


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= 200
    assert BEGIN not in README  # the reference lives in docs/configuration.md


def test_the_generator_rewrites_only_its_section(tmp_path):
    from pipeline.inputs.docs import rewrite
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{BEGIN}\nstale\n{END}\n\nafter\n", encoding="utf-8")
    rewrite(str(page))
    assert page.read_text(encoding="utf-8") == f"# Title\n\n{BEGIN}\n{config_reference()}\n{END}\n\nafter\n"


def test_every_run_option_is_documented():
    for action in _subparsers()["run"]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in README, f"{flag} is missing from the README"


def test_every_command_has_help_and_is_documented():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in action._choices_actions}
    for name in _subparsers():
        assert helps.get(name), f"{name} has no help text"
        assert f"`pipeline {name}" in README


def test_every_command_has_a_description():
    for name, sub in _subparsers().items():
        assert sub.description and len(sub.description) > 40, f"`pipeline {name} --help` has no description"
        assert " ".join(sub.description.split()) in " ".join(sub.format_help().split())


def test_sandbox_help_says_how_to_point_a_run_at_it():
    from pipeline.sandbox import SANDBOX_KEY
    text = _subparsers()["sandbox"].format_help()
    assert "LIGHTX_BASE_URL=http://127.0.0.1:8787/external/api" in text
    assert f"LIGHTX_API_KEY={SANDBOX_KEY}" in text and "--api-key" in text


def test_readme_installs_our_distribution_not_the_pypi_pipeline():
    import pipeline
    assert f"`{pipeline.DISTRIBUTION}`" in README and f"{pipeline.DISTRIBUTION} {pipeline.__version__}" in README
    assert not re.search(r"pip install pipeline\b(?!`: that name)", README)


def test_the_version_a_run_records_is_the_installed_distributions():
    """pipeline/version.py's VERSION is what pyproject.toml builds from, and what pip installed."""
    from importlib.metadata import version
    import pipeline
    assert pipeline.__version__ == version(pipeline.DISTRIBUTION)
    assert 'attr = "pipeline.version.VERSION"' in (ROOT / "pyproject.toml").read_text()


def test_quickstart_is_one_block_of_two_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    commands = [line for line in blocks[0].splitlines() if line.strip()]
    assert commands == ["pip install . && pipeline run configs/catalog.yaml --sandbox",
                        "pip install -e '.[test]' pytest-xdist && python -m pytest -q -n 2"]


def test_exit_codes_are_documented():
    for code in ("0", "1", "2", "75", "130"):
        assert re.search(rf"^\| {code} \|", README, re.M), code
