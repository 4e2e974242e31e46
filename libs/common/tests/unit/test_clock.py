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
