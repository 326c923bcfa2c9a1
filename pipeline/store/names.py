"""Names the planner and the stages share on disk and in buckets: one definition each."""
from __future__ import annotations

STEPS_DIR = "steps"  # under state_dir: a chain's intermediate outputs, named by their sha256, bytes as received
FINGERPRINT_META = "pipeline-fingerprint"  # user metadata of each output object: what made it
SHA256_META = "pipeline-sha256"
