"""The planner app on the in-memory bus and SQLite, on a clock set to the morning of its service day."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish, random_ref
from lastmile.planner.app import create_app
from lastmile.planner.settings import PlannerSettings

MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, the day the orders are for


@dataclass
class Planner:
    client: httpx.AsyncClient
    bus: InMemoryBus
    depot: dict[str, Any]
    vehicles: list[dict[str, Any]]
    app: Any

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body, headers=ops_headers())

    async def get(self, path: str, **params: Any) -> Any:
        reply = await self.client.get(path, params=params, headers=ops_headers())
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def publish(self, payload: ev.Payload) -> None:
        await publish(self.bus, payload)

    def events(self, topic: str, type_: str) -> list[ev.Envelope]:
        return self.bus.envelopes(topic, type_)

    async def wait_for(self, topic: str, type_: str, count: int = 1) -> list[ev.Envelope]:
        return await eventually(lambda: (e := self.events(topic, type_)) and len(e) >= count and e)

    async def idle(self) -> None:
        replanner = self.app.state.deps.replanner
        await eventually(lambda: replanner.idle)

    async def routes(self) -> dict[str, dict[str, Any]]:
        return {r["vehicle_id"]: r for r in await self.get("/v1/routes", date="2026-12-01")}


def order(depot_id: str, lat: float = 52.53, lon: float = 13.41, **kw: Any) -> ev.OrderCreated:
    values: dict[str, Any] = {
        "order_id": random_ref("ord"),
        "merchant_id": "mer_1",
        "reference": random_ref("R"),
        "depot_id": depot_id,
        "recipient": ev.Recipient(name="Ada"),
        "destination": ev.Destination(lat=lat, lon=lon),
        "time_windows": [ev.TimeWindow(start="2026-12-01T10:00:00+01:00", end="2026-12-01T18:00:00+01:00")],
        "tracking_token": "tok",
        "tracking_url": "http://t/tok",
        "created_at": datetime(2026, 11, 30, tzinfo=UTC),
    }
    values.update(kw)
    return ev.OrderCreated(**values)


@pytest.fixture
def make_order() -> Callable[..., ev.OrderCreated]:
    return order


@pytest.fixture
def planner_factory(tmp_path: Path) -> Callable[..., Any]:
    """`async with planner_factory(vehicles=2, waves=[...], **settings) as p:` a running planner with a fleet
    (`clock=`: one the test moves, by changing its epoch)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(
        vehicles: int = 1,
        waves: list[dict[str, Any]] | None = None,
        vehicle: dict[str, Any] | None = None,
        clock: Clock | None = None,
        **settings: Any,
    ) -> AsyncIterator[Planner]:
        bus = InMemoryBus()
        await bus.start()
        config = PlannerSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/planner-{random_ref()}.db",
            ops_token=TEST_OPS_TOKEN,
            replan_debounce_s=0.05,
            solver_timeout_s=0.3,
            solver_processes=settings.pop("solver_processes", 0),
            **settings,
        )
        app = create_app(config, bus=bus, clock=clock or Clock(epoch=MORNING))
        try:
            async with app_client(app) as client:
                body = {"name": "Mitte", "lat": 52.52, "lon": 13.40, "waves": waves or []}
                depot = (await client.post("/v1/depots", json=body, headers=ops_headers())).json()
                fleet = []
                for _ in range(vehicles):
                    spec = {"depot_id": depot["id"], **(vehicle or {})}
                    reply = await client.post("/v1/vehicles", json=spec, headers=ops_headers())
                    assert reply.status_code == 201, reply.text
                    fleet.append(reply.json())
                yield Planner(client, bus, depot, fleet, app)
        finally:
            await bus.stop()

    return start
