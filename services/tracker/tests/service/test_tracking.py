"""Routes in, pings and stop results through the API, delivery events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish
from lastmile.tracker.app import create_app
from lastmile.tracker.settings import TrackerSettings

NOW = datetime.now(UTC)


def route(vehicle_id: str, orders: list[str], version: int = 1) -> ev.RoutePlanned:
    depot = ev.GeoPoint(lat=52.52, lon=13.40)
    stops = [
        ev.RouteStop(
            stop_id=o,
            order_id=o,
            sequence=i + 1,
            location=ev.GeoPoint(lat=52.53 + i / 100, lon=13.41),
            planned_arrival=NOW + timedelta(minutes=20 * (i + 1)),
            planned_departure=NOW + timedelta(minutes=20 * (i + 1) + 3),
            service_s=180,
        )
        for i, o in enumerate(orders)
    ]
    return ev.RoutePlanned(
        route_id="rte_1",
        version=version,
        vehicle_id=vehicle_id,
        depot_id="dep_1",
        plan_id="pln_1",
        service_date=NOW.date(),
        start=depot,
        end=depot,
        start_at=NOW,
        end_at=NOW + timedelta(hours=3),
        distance_m=10_000,
        duration_s=3600,
        stops=stops,
    )


@pytest.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[Any]:
    bus = InMemoryBus()
    await bus.start()
    settings = TrackerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/tracker.db", ops_token=TEST_OPS_TOKEN
    )
    async with app_client(create_app(settings, bus=bus)) as client:
        device = (
            await client.post("/v1/devices", json={"vehicle_id": "veh_1"}, headers=ops_headers())
        ).json()
        yield client, bus, {"Authorization": f"Bearer {device['device_key']}"}, device
    await bus.stop()


def ping(minutes: float = 0, lat: float = 52.521) -> dict[str, Any]:
    return {"lat": lat, "lon": 13.401, "recorded_at": (NOW + timedelta(minutes=minutes)).isoformat()}


async def test_the_first_ping_sends_the_route_out_for_delivery(tracker: Any) -> None:
    client, bus, headers, _ = tracker
    await publish(bus, route("veh_1", ["ord_a", "ord_b"]))
    await eventually(lambda: bus.pending("tracker", "routes.v1") == 0)
    reply = await client.post("/v1/pings", json={"pings": [ping()]}, headers=headers)
    assert reply.status_code == 202
    assert reply.json() == {"ok": 1}
    out = await eventually(
        lambda: len(bus.envelopes("deliveries.v1", "lastmile.delivery.out_for_delivery")) == 2
    )
    assert out
    located = bus.envelopes("locations.v1")
    assert [e.data["vehicle_id"] for e in located] == ["veh_1"]


async def test_a_completed_stop_is_delivered_with_proof(tracker: Any) -> None:
    client, bus, headers, _ = tracker
    await publish(bus, route("veh_1", ["ord_a"]))
    await eventually(lambda: bus.pending("tracker", "routes.v1") == 0)
    body = {"outcome": "delivered", "recipient_name": "Ada", "lat": 52.53, "lon": 13.41}
    reply = await client.post("/v1/stops/ord_a/complete", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    delivered = await eventually(lambda: bus.envelopes("deliveries.v1", "lastmile.delivery.delivered"))
    assert delivered[0].data["proof"]["recipient_name"] == "Ada"
    again = await client.post("/v1/stops/ord_a/complete", json=body, headers=headers)
    assert again.status_code == 409


async def test_duplicate_future_and_stale_pings_are_counted_not_stored(tracker: Any) -> None:
    client, _bus, headers, _ = tracker
    pings = [ping(0), ping(0), ping(60 * 24), ping(-60 * 48)]
    reply = await client.post("/v1/pings", json={"pings": pings}, headers=headers)
    assert reply.json() == {"ok": 1, "duplicate": 1, "future": 1, "too_old": 1}


async def test_a_revoked_device_is_refused(tracker: Any) -> None:
    client, _bus, headers, device = tracker
    assert (await client.delete(f"/v1/devices/{device['id']}", headers=ops_headers())).status_code == 204
    assert (await client.post("/v1/pings", json={"pings": [ping()]}, headers=headers)).status_code == 401


async def test_a_stop_on_another_vehicle_is_not_found(tracker: Any) -> None:
    client, bus, headers, _ = tracker
    await publish(bus, route("veh_2", ["ord_z"]))
    await eventually(lambda: bus.pending("tracker", "routes.v1") == 0)
    reply = await client.post("/v1/stops/ord_z/complete", json={"outcome": "delivered"}, headers=headers)
    assert reply.status_code == 404


async def test_completed_stops_count_as_on_time_only_inside_their_promised_window(tracker: Any) -> None:
    from prometheus_client import REGISTRY

    client, bus, headers, _ = tracker
    planned = route("veh_1", ["ord_now", "ord_later"])
    windows = [
        (NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        (NOW + timedelta(hours=5), NOW + timedelta(hours=6)),
    ]
    stops = [
        s.model_copy(update={"promised_window": ev.TimeWindow(start=w[0], end=w[1])})
        for s, w in zip(planned.stops, windows, strict=True)
    ]
    await publish(bus, planned.model_copy(update={"stops": stops}))
    await eventually(lambda: bus.pending("tracker", "routes.v1") == 0)

    def count(on_time: str) -> float:
        labels = {"outcome": "delivered", "on_time": on_time}
        return REGISTRY.get_sample_value("lastmile_tracker_stops_completed_total", labels) or 0.0

    def eta_errors() -> float:
        return REGISTRY.get_sample_value("lastmile_tracker_eta_error_seconds_count") or 0.0

    before = (count("true"), count("false"), eta_errors())
    for order in ("ord_now", "ord_later"):
        reply = await client.post(
            f"/v1/stops/{order}/complete", json={"outcome": "delivered"}, headers=headers
        )
        assert reply.status_code == 200, reply.text
    assert (count("true"), count("false"), eta_errors()) == (before[0] + 1, before[1] + 1, before[2] + 2)
