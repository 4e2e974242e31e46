"""A service level becomes a window in the depot's timezone and opening hours."""

from datetime import datetime
from typing import Any

from lastmile.common.clock import Clock

EVENING = datetime.fromisoformat("2030-12-02T18:30:00+00:00")  # 19:30 in Berlin; the depot closes at 21:00


def level(an_order: Any, name: str, **more: Any) -> dict[str, Any]:
    return {k: v for k, v in an_order(service_level=name, **more).items() if k != "time_windows"}


async def test_same_day_runs_from_now_to_closing_in_the_depots_timezone(intake: Any, an_order: Any) -> None:
    order = await intake.create(level(an_order, "same_day"))
    assert order["service_level"] == "same_day"
    assert order["time_windows"] == [
        {"start": "2030-12-02T09:01:00+01:00", "end": "2030-12-02T21:00:00+01:00"}
    ]


async def test_next_day_is_tomorrows_opening_hours(intake: Any, an_order: Any) -> None:
    order = await intake.create(level(an_order, "next_day"))
    assert order["time_windows"] == [
        {"start": "2030-12-03T07:00:00+01:00", "end": "2030-12-03T21:00:00+01:00"}
    ]
    event = (await intake.wait_events(1))[0].data
    assert event["time_windows"] == [
        {"start": "2030-12-03T07:00:00+01:00", "end": "2030-12-03T21:00:00+01:00"}
    ]


async def test_a_window_does_not_start_before_the_parcel_is_ready(intake: Any, an_order: Any) -> None:
    order = await intake.create(level(an_order, "same_day", ready_at="2030-12-02T13:15:00+01:00"))
    assert order["time_windows"][0]["start"] == "2030-12-02T13:15:00+01:00"


async def test_same_day_is_refused_too_close_to_closing(make_intake: Any, an_order: Any) -> None:
    intake = await make_intake(clock=Clock(epoch=EVENING))
    reply = await intake.client.post("/v1/orders", json=level(an_order, "same_day"), headers=intake.headers)
    assert reply.status_code == 422
    assert [e["pointer"] for e in reply.json()["errors"]] == ["#/service_level"]
    assert "closes at 21:00" in reply.json()["errors"][0]["detail"]
    late = await intake.create(level(an_order, "next_day"))
    assert late["time_windows"][0]["start"] == "2030-12-03T07:00:00+01:00"


async def test_follows_the_depots_timezone_not_the_servers(make_intake: Any, an_order: Any) -> None:
    from lastmile.common import events as ev

    tokyo = ev.DepotUpserted(
        depot_id="dep_tokyo",
        name="Tokyo",
        location=ev.GeoPoint(lat=35.68, lon=139.76),
        timezone="Asia/Tokyo",
        service_radius_km=20,
        opens="08:00",
        closes="20:00",
    )
    intake = await make_intake(depots=(tokyo,))
    order = await intake.create(level(an_order, "next_day", destination={"lat": 35.69, "lon": 139.70}))
    # 08:00 UTC on 2 December is 17:00 in Tokyo: next day is 3 December there
    assert order["time_windows"] == [
        {"start": "2030-12-03T08:00:00+09:00", "end": "2030-12-03T20:00:00+09:00"}
    ]
