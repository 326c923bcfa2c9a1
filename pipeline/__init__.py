"""Batch LightX AI Background Generator runs: config + manifest in, JPEGs and a results table out."""
from pipeline.errors import PipelineError

__version__ = "0.1.0"

__all__ = ["PipelineError", "__version__"]
