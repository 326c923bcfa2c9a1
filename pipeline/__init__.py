"""Batch LightX AI image runs: config + manifest in, pictures, a results table and a report out.

    import pipeline
    overview = pipeline.validate("configs/catalog.yaml")          # every problem; nothing sent
    result = pipeline.run("configs/catalog.yaml", sandbox=True)   # a private sandbox, no key
    result.exit_code, dict(result.counts), result.credits
    pipeline.status("configs/catalog.yaml")["counts"]
    pipeline.report("configs/catalog.yaml")                       # report.html's path

Every error raised on purpose is a ``PipelineError`` whose ``exit_code`` the CLI exits with; see
docs/library.md.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.errors import (ApiUnreachable, AuthError, CheckpointError, ConfigError, CreditsError, FatalApiError,
                             InvalidItems, LockError, OutputError, PipelineError, WrongApi)

# The subpackage pipeline.run (the engine) is loaded first, so that the function below keeps the name:
# the import system sets a package's attribute when it first loads a subpackage of that name.
# `from pipeline.run import engine` still reaches the subpackage; `pipeline.run` is the function.
importlib.import_module("pipeline.run")
from pipeline.library import report, run, status, validate  # noqa: E402
from pipeline.version import DISTRIBUTION
from pipeline.version import installed_version as _installed_version  # noqa: E402

if TYPE_CHECKING:
    from pipeline.inputs.validate import Overview
    from pipeline.plan.planner import Plan
    from pipeline.plan.shards import Shard
    from pipeline.run.engine import RunResult


__all__ = [
    "DISTRIBUTION", "__version__",
    "validate", "run", "status", "report",
    "Overview", "RunResult", "Plan", "Shard",
    "PipelineError", "ConfigError", "InvalidItems", "LockError", "CheckpointError", "OutputError",
    "FatalApiError", "AuthError", "CreditsError", "ApiUnreachable", "WrongApi",
]

# The result types are imported on first use: their modules cost ~0.5 s, which `pipeline --version`
# and the sandbox need not pay.
_TYPES = {"Overview": "pipeline.inputs.validate", "RunResult": "pipeline.run.engine",
          "Plan": "pipeline.plan.planner", "Shard": "pipeline.plan.shards"}


def __getattr__(name: str) -> Any:
    if name in _TYPES:
        value = getattr(importlib.import_module(_TYPES[name]), name)
    elif name == "__version__":
        value = _installed_version()
    else:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
