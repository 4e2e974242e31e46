"""The tracker in-process (InMemoryBus, SQLite), with a driver's device, routes and orders to feed it, and a
live server on a real port for the OsmAnd listener, server-sent events and the browser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.outbox import pending_count
from lastmile.common.serve import uvicorn_config
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish
from lastmile.tracker.app import create_app
from lastmile.tracker.settings import TrackerSettings


@dataclass
class Tracker:
    app: FastAPI
    client: httpx.AsyncClient
    bus: InMemoryBus
    settings: TrackerSettings
    device: dict[str, Any]
    base_url: str = "http://test"
    extra_devices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def driver(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.device['device_key']}"}

    @property
    def osmand_url(self) -> str:
        return f"http://127.0.0.1:{self.app.state.osmand.port}/"

    async def publish(self, payload: ev.Payload) -> None:
        await publish(self.bus, payload)
        topic = payload.TOPIC.name
        await eventually(lambda: self.bus.pending("tracker", topic) == 0, timeout=20)

    async def settle(self) -> None:
        """Wait until the tracker has relayed and consumed everything so far (its own events too)."""
        db = self.app.state.runtime.db

        async def quiet() -> bool:
            if await pending_count(db):
                return False
            return all(
                self.bus.pending("tracker", t) == 0 for t in ("routes.v1", "orders.v1", "locations.v1")
            )

        for _ in range(2):  # consuming may add to the outbox again
            await eventually(quiet, timeout=30)

    def events(self, type_: str, order_id: str | None = None) -> list[ev.Envelope]:
        found = self.bus.envelopes("deliveries.v1", type_)
        return [e for e in found if order_id is None or e.data["order_id"] == order_id]

    async def add_device(self, vehicle_id: str) -> dict[str, Any]:
        reply = await self.client.post("/v1/devices", json={"vehicle_id": vehicle_id}, headers=ops_headers())
        assert reply.status_code == 201, reply.text
        return dict(reply.json())


def settings_for(tmp_path: Path, **overrides: Any) -> TrackerSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/tracker.db",
        "ops_token": TEST_OPS_TOKEN,
        "osmand_port": 0,
        "stream_poll_s": 1.0,
        **overrides,
    }
    return TrackerSettings(**values)


@contextlib.asynccontextmanager
async def running_tracker(settings: TrackerSettings, *, live: bool) -> AsyncIterator[Tracker]:
    bus = InMemoryBus(retry_backoff_s=0.05)
    await bus.start()
    app = create_app(settings, bus=bus)
    try:
        if live:
            async with (
                serving(app, settings.port) as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=20) as client,
            ):
                yield await _with_device(app, client, bus, settings, base_url)
        else:
            async with app_client(app) as client:
                yield await _with_device(app, client, bus, settings, "http://test")
    finally:
        await bus.stop()


async def _with_device(
    app: FastAPI, client: httpx.AsyncClient, bus: InMemoryBus, settings: TrackerSettings, base_url: str
) -> Tracker:
    reply = await client.post("/v1/devices", json={"vehicle_id": "veh_1"}, headers=ops_headers())
    assert reply.status_code == 201, reply.text
    return Tracker(app, client, bus, settings, reply.json(), base_url)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    """The app under uvicorn on a real port, lifespan included, in this event loop."""
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=30)
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[Tracker]:
    async with running_tracker(settings_for(tmp_path), live=False) as t:
        yield t


@pytest.fixture
async def live_tracker(tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[Tracker]:
    async with running_tracker(settings_for(tmp_path, port=free_port()), live=True) as t:
        yield t


@pytest.fixture
def start_tracker(
    tmp_path: Path, free_port: Callable[[], int]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Tracker]]:
    """`async with start_tracker(live=True, device_rate_per_s=1e4) as t`: a tracker with settings of the test's."""

    def start(*, live: bool = False, **overrides: Any) -> contextlib.AbstractAsyncContextManager[Tracker]:
        if live:
            overrides.setdefault("port", free_port())
        return running_tracker(settings_for(tmp_path, **overrides), live=live)

    return start


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    at: datetime


@pytest.fixture
def gps_trace(shared_data: Path) -> Callable[[str], list[Fix]]:
    """A real recorded drive from ../shared/data/gps (see its README): barefoot's Munich car, WKT lon-lat."""

    def load(name: str) -> list[Fix]:
        path = shared_data / "data" / "gps" / name
        if not path.exists():
            pytest.fail(f"GPS trace {path} is missing; LASTMILE_SHARED must point at the shared data")
        fixes = []
        for point in json.loads(path.read_text()):
            lon, lat = (float(v) for v in point["point"].removeprefix("POINT(").removesuffix(")").split())
            fixes.append(Fix(lat, lon, datetime.strptime(point["time"], "%Y-%m-%d %H:%M:%S%z")))
        return fixes

    return load


RouteMaker = Callable[..., ev.RoutePlanned]


@pytest.fixture
def make_route() -> RouteMaker:
    """A route for `vehicle_id` through `points` [(order, lat, lon)], planned from `start_at` with `leg_s`
    between stops and `service_s` at each."""

    def make(
        vehicle_id: str,
        points: list[tuple[str, float, float]],
        *,
        start: tuple[float, float] = (48.10, 11.50),
        start_at: datetime | None = None,
        leg_s: int = 300,
        service_s: int = 180,
        version: int = 1,
        route_id: str = "rte_1",
    ) -> ev.RoutePlanned:
        at = start_at or datetime.now(UTC)
        begin, stops = at, []
        for n, (order, lat, lon) in enumerate(points):
            at += timedelta(seconds=leg_s)
            stops.append(
                ev.RouteStop(
                    stop_id=order,
                    order_id=order,
                    sequence=n + 1,
                    location=ev.GeoPoint(lat=lat, lon=lon),
                    planned_arrival=at,
                    planned_departure=at + timedelta(seconds=service_s),
                    service_s=service_s,
                    promised_window=ev.TimeWindow(
                        start=at - timedelta(minutes=30), end=at + timedelta(minutes=30)
                    ),
                    leg_distance_m=2000,
                    leg_duration_s=leg_s,
                )
            )
            at += timedelta(seconds=service_s)
        depot = ev.GeoPoint(lat=start[0], lon=start[1])
        return ev.RoutePlanned(
            route_id=route_id,
            version=version,
            vehicle_id=vehicle_id,
            depot_id="dep_1",
            plan_id="pln_1",
            service_date=begin.date(),
            start=depot,
            end=depot,
            start_at=begin,
            end_at=at,
            distance_m=2000 * len(points),
            duration_s=int((at - begin).total_seconds()),
            stops=stops,
        )

    return make


OrderMaker = Callable[..., tuple[ev.OrderCreated, str]]


@pytest.fixture
def make_order() -> OrderMaker:
    """An order as order-intake publishes it, and its tracking token."""

    def make(
        order_id: str, lat: float, lon: float, *, merchant: str = "Acme", reference: str = "R-1"
    ) -> tuple[ev.OrderCreated, str]:
        token = secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        order = ev.OrderCreated(
            order_id=order_id,
            merchant_id="mer_1",
            merchant_name=merchant,
            reference=reference,
            depot_id="dep_1",
            recipient=ev.Recipient(name="Ada", phone="+447700900123", timezone="Europe/Berlin"),
            destination=ev.Destination(
                lat=lat, lon=lon, address_lines=["Hauptstraße 1"], postal_code="80331", city="München"
            ),
            time_windows=[ev.TimeWindow(start=now, end=now + timedelta(hours=4))],
            tracking_token=token,
            tracking_url=f"http://test/track/{token}",
            created_at=now - timedelta(hours=2),
        )
        return order, token

    return make
