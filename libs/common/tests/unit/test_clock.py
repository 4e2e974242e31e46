import time
from datetime import UTC, datetime

from lastmile.common.clock import Clock


def test_a_fast_clock_runs_ahead_by_its_speed() -> None:
    epoch = datetime(2026, 12, 1, 6, tzinfo=UTC)
    clock = Clock(speed=60.0, epoch=epoch)
    time.sleep(0.1)
    elapsed = (clock.now() - epoch).total_seconds()
    assert 5.0 <= elapsed <= 30.0  # 0.1 s real at 60x is 6 s, allowing for a slow machine


def test_the_default_clock_is_the_wall_clock() -> None:
    assert abs((Clock().now() - datetime.now(UTC)).total_seconds()) < 1


def test_processes_sharing_epoch_and_anchor_agree_whenever_they_started() -> None:
    epoch = datetime(2026, 12, 1, 6, tzinfo=UTC)
    first = Clock(speed=100.0, epoch=epoch, anchor=time.time() - 10)
    time.sleep(0.05)
    second = Clock(speed=100.0, epoch=epoch, anchor=first.anchor)
    assert abs((first.now() - second.now()).total_seconds()) < 2
    assert 990 <= (second.now() - epoch).total_seconds() <= 1100  # 10 s real at 100x
