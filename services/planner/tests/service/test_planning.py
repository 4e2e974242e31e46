"""Orders in, routes and scheduled deliveries out, on the in-memory bus and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish, random_ref
from lastmile.planner.app import create_app
from lastmile.planner.settings import PlannerSettings


@pytest.fixture
async def planner(tmp_path: Path) -> AsyncIterator[Any]:
    bus = InMemoryBus()
    await bus.start()
    settings = PlannerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/planner.db",
        ops_token=TEST_OPS_TOKEN,
        replan_debounce_s=0.05,
    )
    async with app_client(create_app(settings, bus=bus)) as client:
        depot = (
            await client.post(
                "/v1/depots", json={"name": "Mitte", "lat": 52.52, "lon": 13.40}, headers=ops_headers()
            )
        ).json()
        vehicle = (
            await client.post("/v1/vehicles", json={"depot_id": depot["id"]}, headers=ops_headers())
        ).json()
        yield client, bus, depot, vehicle
    await bus.stop()


def order(
    depot_id: str, lat: float = 52.53, version: int = 1, order_id: str | None = None
) -> ev.OrderCreated:
    return ev.OrderCreated(
        order_id=order_id or random_ref("ord"),
        version=version,
        merchant_id="mer_1",
        reference=random_ref("R"),
        depot_id=depot_id,
        recipient=ev.Recipient(name="Ada"),
        destination=ev.Destination(lat=lat, lon=13.41),
        time_windows=[ev.TimeWindow(start="2026-12-01T10:00:00+01:00", end="2026-12-01T18:00:00+01:00")],
        tracking_token="tok",
        tracking_url="http://t/tok",
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
    )


async def test_an_order_is_scheduled_on_a_route(planner: Any) -> None:
    client, bus, depot, vehicle = planner
    created = order(depot["id"])
    await publish(bus, created)
    scheduled = await eventually(lambda: bus.envelopes("deliveries.v1", "lastmile.delivery.scheduled"))
    assert scheduled[0].subject == created.order_id
    assert scheduled[0].data["vehicle_id"] == vehicle["id"]
    routes = bus.envelopes("routes.v1", "lastmile.route.planned")
    assert [s["order_id"] for s in routes[0].data["stops"]] == [created.order_id]
    listed = (await client.get("/v1/routes", params={"date": "2026-12-01"}, headers=ops_headers())).json()
    assert listed[0]["vehicle_id"] == vehicle["id"]


async def test_a_second_order_revises_the_route_and_keeps_the_first_promise_when_nothing_moved(
    planner: Any,
) -> None:
    _client, bus, depot, _vehicle = planner
    await publish(bus, order(depot["id"], lat=52.53))
    await eventually(lambda: bus.envelopes("routes.v1", "lastmile.route.planned"))
    await publish(bus, order(depot["id"], lat=52.54))
    revised = await eventually(lambda: bus.envelopes("routes.v1", "lastmile.route.revised"))
    assert revised[-1].data["version"] == 2
    assert len(revised[-1].data["stops"]) == 2


async def test_an_order_no_vehicle_can_carry_is_unassigned_with_a_reason(planner: Any) -> None:
    _client, bus, depot, _vehicle = planner
    too_heavy = order(depot["id"]).model_copy(update={"parcels": [ev.Parcel(count=1, weight_kg=5000)]})
    await publish(bus, too_heavy)
    unassigned = await eventually(lambda: bus.envelopes("deliveries.v1", "lastmile.delivery.unassigned"))
    assert unassigned[0].data["reason"] == "too_large"


async def test_ops_routes_need_the_ops_token(planner: Any) -> None:
    client, *_ = planner
    assert (await client.get("/v1/routes")).status_code == 401
    assert (await client.post("/v1/depots", json={"name": "x", "lat": 1, "lon": 1})).status_code == 401
