from datetime import UTC, datetime

from lastmile.common import events as ev
from lastmile.order_intake.domain import status_detail

T = datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_an_unassigned_order_says_why() -> None:
    event = ev.DeliveryUnassigned(
        order_id="o", depot_id="d", reason="too_large", detail="400 kg exceed every vehicle"
    )
    assert status_detail(event) == {"reason": "too_large", "detail": "400 kg exceed every vehicle"}


def test_a_scheduled_order_carries_its_promise_but_not_the_vehicle() -> None:
    window = ev.TimeWindow(start=T, end=T.replace(hour=10))
    event = ev.DeliveryScheduled(
        order_id="o", depot_id="d", vehicle_id="veh_1", route_id="r", route_version=1,
        planned_arrival=T, promised_window=window, service_date=T.date(),
    )  # fmt: skip
    detail = status_detail(event)
    assert detail["promised_window"] == {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}
    assert "vehicle_id" not in detail


def test_a_failed_attempt_says_why() -> None:
    event = ev.DeliveryFailed(order_id="o", vehicle_id="v", at=T, reason="not_at_home")
    assert status_detail(event) == {"at": "2026-12-01T09:00:00Z", "reason": "not_at_home"}
