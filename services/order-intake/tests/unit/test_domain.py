"""Order rules, called directly: no I/O."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic_core import to_json

from lastmile.common import events as ev
from lastmile.order_intake import domain
from lastmile.order_intake.schemas import CreateOrder, DestinationIn, ParcelIn, TimeWindowIn

BERLIN = domain.Depot("dep_b", "Berlin", 52.52, 13.40, "Europe/Berlin", 15)
NOW = datetime(2030, 12, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


def command(**changes: object) -> CreateOrder:
    order = {
        "reference": "A-1",
        "recipient": {"name": "Ada", "phone": "+447700900123", "email": "ada@example.com"},
        "destination": {
            "lat": 52.5208,
            "lon": 13.4095,
            "address_lines": ["Alexanderplatz 1"],
            "country": "DE",
        },
        "time_windows": [{"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}],
        "parcels": [{"count": 2, "weight_kg": 3}],
        "skills": ["heavy"],
        "ready_at": "2030-12-02T09:30:00+01:00",
        **changes,
    }
    return CreateOrder.model_validate({k: v for k, v in order.items() if v is not None})


def new(cmd: CreateOrder) -> dict[str, object]:
    return domain.new_order(
        cmd,
        order_id="ord_1",
        merchant_id="mer_1",
        merchant_name="Acme",
        depot=BERLIN,
        tracking_token="tok",
        tracking_base_url="https://t/",
        now=NOW,
    )


@pytest.mark.parametrize("level", [None, "same_day", "next_day"])
def test_a_new_orders_data_is_exactly_its_created_event(level: str | None) -> None:
    cmd = command(time_windows=None, service_level=level) if level else command()
    data = new(cmd)
    event = ev.OrderCreated.model_validate(data)
    assert set(data) == set(ev.OrderCreated.model_fields)
    assert json.loads(to_json(data)) == json.loads(event.model_dump_json())


def test_the_commands_destination_parcel_and_window_have_the_events_fields() -> None:
    """`new_order` puts these parts of the command into the event's data as they are."""
    for command_part, event_part in (
        (DestinationIn, ev.Destination),
        (ParcelIn, ev.Parcel),
        (TimeWindowIn, ev.TimeWindow),
    ):
        assert tuple(command_part.model_fields) == tuple(event_part.model_fields)


def test_a_same_day_window_starts_now_and_ends_at_closing() -> None:
    window = domain.service_window("same_day", BERLIN, NOW, None)
    assert (window.start.isoformat(), window.end.isoformat()) == (
        "2030-12-02T09:01:00+01:00",
        "2030-12-02T21:00:00+01:00",
    )


def test_next_day_across_the_end_of_daylight_saving_keeps_local_hours() -> None:
    saturday = datetime(2030, 10, 26, 12, 0, tzinfo=UTC)  # clocks go back in Berlin that night
    window = domain.service_window("next_day", BERLIN, saturday, None)
    assert (window.start.isoformat(), window.end.isoformat()) == (
        "2030-10-27T07:00:00+01:00",
        "2030-10-27T21:00:00+01:00",
    )


def test_the_nearest_serving_depot_wins() -> None:
    near = domain.Depot("near", "Near", 52.52, 13.41, "Europe/Berlin", 5)
    far = domain.Depot("far", "Far", 52.40, 13.10, "Europe/Berlin", 50)
    inactive = domain.Depot("off", "Off", 52.5208, 13.4095, "Europe/Berlin", 50, active=False)
    assert domain.choose_depot([far, inactive, near], 52.5208, 13.4095, None).id == "near"


def test_a_polygon_holds_what_is_inside_it() -> None:
    square = ((0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0))
    assert domain.inside(square, 0.5, 0.5)
    assert not domain.inside(square, 1.5, 0.5)


def test_changes_stop_once_out_for_delivery() -> None:
    snapshot = ev.OrderCreated.model_validate(new(command()))
    with pytest.raises(domain.NotChangeable):
        domain.cancel_order(snapshot, "out_for_delivery", None, NOW)
    assert domain.cancel_order(snapshot, "scheduled", "no", NOW).version == 2


def test_status_never_goes_back_from_a_driven_route() -> None:
    scheduled = ev.DeliveryUnassigned(order_id="o", depot_id="d", reason="no vehicle")
    assert domain.status_after("out_for_delivery", scheduled) is None
    assert domain.status_after("received", scheduled) == "unassigned"


def test_a_re_plan_notice_after_a_failed_attempt_does_not_undo_it() -> None:
    """Seen in a simulated day: the planner scheduled the stop in a plan made just before it heard the driver's
    failure, and the merchant's order ended the day `scheduled`."""
    window = ev.TimeWindow(start=NOW, end=NOW + timedelta(hours=1))
    late = ev.DeliveryScheduled(
        order_id="o",
        depot_id="d",
        vehicle_id="v",
        route_id="r",
        route_version=3,
        planned_arrival=NOW,
        promised_window=window,
        service_date=NOW.date(),
    )
    assert domain.status_after("failed", late) is None
    assert (
        domain.status_after("failed", ev.DeliveryUnassigned(order_id="o", depot_id="d", reason="x")) is None
    )
    assert domain.status_after("scheduled", late) is None  # unchanged
    assert domain.status_after("received", late) == "scheduled"


@pytest.mark.parametrize(
    "status", ["received", "scheduled", "unassigned", "out_for_delivery", "arriving", "failed", "delivered"]
)
def test_only_an_arriving_soon_eta_can_move_a_status(status: str) -> None:
    """The handler skips loading the order for an event that cannot move it: most ETA changes."""
    eta = ev.EtaChanged(order_id="o", vehicle_id="v", eta=NOW, stops_before=3, at=NOW)
    soon = eta.model_copy(update={"arriving_soon": True, "stops_before": 0})
    assert not domain.moves_status(eta)
    assert domain.status_after(status, eta) is None
    assert domain.moves_status(soon)
    assert domain.status_after(status, soon) == ("arriving" if status == "out_for_delivery" else None)
