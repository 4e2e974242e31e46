"""What the planner's tests on the real broker and PostgreSQL share: an order for the morning of 1 December."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from lastmile.common import events as ev
from lastmile.common.testing import random_ref

MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 08:00 in Berlin


def order(depot_id: str, lat: float) -> ev.OrderCreated:
    return ev.OrderCreated(
        order_id=random_ref("ord"),
        merchant_id="mer_1",
        reference=random_ref("R"),
        depot_id=depot_id,
        recipient=ev.Recipient(name="Ada"),
        destination=ev.Destination(lat=lat, lon=13.41),
        time_windows=[ev.TimeWindow(start="2026-12-01T10:00:00+01:00", end="2026-12-01T18:00:00+01:00")],
        tracking_token="tok",
        tracking_url="http://t/tok",
        created_at=MORNING,
    )


@pytest.fixture
def make_order() -> Callable[[str, float], ev.OrderCreated]:
    """`make_order(depot_id, lat)`: an order of that depot for 10:00-18:00 on 1 December (Berlin)."""
    return order
