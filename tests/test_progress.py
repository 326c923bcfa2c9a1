"""The plain progress line that cron and CI logs get: every item is counted somewhere."""
from __future__ import annotations

import re

from pipeline.run.progress import Progress, StageCounts


def test_items_not_yet_started_are_not_called_pending():
    counts = StageCounts()
    counts.queued(30)
    for _ in range(3):
        counts.taken()
    progress = Progress(total=30, counts=counts, enabled=False, quiet=True)
    line = progress.line()
    assert line.startswith("0/30 · done 0 · failed 0 · left for a later run 0 · not started 27 · ")
    assert "pending" not in line
    progress.finished("done")
    progress.finished("submitted")  # parked: its order is collected by a later run
    counts.taken()
    numbers = dict(re.findall(r"([a-z][a-z ]*?) (\d+)(?: ·|$)", progress.line()))
    assert (numbers["done"], numbers["left for a later run"], numbers["not started"]) == ("1", "1", "26")
