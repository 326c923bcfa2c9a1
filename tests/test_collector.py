"""run/collector.py: the plan's objects are frozen out of the collector's passes during the drive, and
the collector is left as it was found."""
import gc

import pytest

from pipeline.run.collector import YOUNG_THRESHOLD, long_lived


def test_a_drive_freezes_what_is_alive_and_makes_young_passes_rarer():
    before = gc.get_threshold()
    kept = [object() for _ in range(10)]  # alive before the drive: frozen with the rest
    with long_lived():
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (max(YOUNG_THRESHOLD, before[0]), *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_collector_is_restored_when_the_drive_fails():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with long_lived():
            raise RuntimeError("the run stopped")
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
