import gc
from collections.abc import Iterator

import pytest

from lastmile.common.serve import quiet_gc


@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_restored")
def test_quiet_gc_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    survivors = [[] for _ in range(10)]  # tracked by the collector

    quiet_gc(young=5_000)

    assert gc.get_freeze_count() >= len(survivors)
    assert gc.get_threshold() == (5_000, 10, 10)
