"""Batch LightX AI Background Generator runs: config + manifest in, JPEGs and a results table out."""
from pipeline.errors import PipelineError

DISTRIBUTION = "lightx-pipeline"  # the name on the package index; the import package is `pipeline`

__all__ = ["DISTRIBUTION", "PipelineError", "__version__"]


def __getattr__(name: str) -> str:
    # Looked up on first use: importlib.metadata costs every command ~60 ms of start-up.
    if name != "__version__":
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        value = version(DISTRIBUTION)
    except PackageNotFoundError:  # a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
