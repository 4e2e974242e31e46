"""When a re-plan re-announces a stop's schedule: lateness counts as late or on time, not by the second."""

from __future__ import annotations

import pytest

from lastmile.planner.handlers_routes import _late_by


@pytest.mark.parametrize(
    ("before", "after", "announced"),
    [
        (0, 0, False),
        (None, 0, False),
        (0, 1, True),  # on time → late: the customer's promise is at risk
        (300, 420, False),  # a re-plan's seconds: the same news
        (899, 1901, False),  # later still: the customer was told it is late
        (2000, 100, False),
        (120, 0, True),  # on time again
    ],
)
def test_lateness_is_news_when_a_stop_turns_late_or_on_time(
    before: int | None, after: int, announced: bool
) -> None:
    assert (_late_by(before) != _late_by(after)) is announced
