"""On PostgreSQL the planner's writers take their row locks in one order (jobs by order id, then routes by id), so
they wait for each other instead of deadlocking: a plan being saved and a batch of delivery events, and two
batches side by side (a deadlock cost a second and a retry of the whole plan or batch: a simulated day on the
distributed platform hit a dozen)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish
from lastmile.planner import handlers
from lastmile.planner.app import create_app
from lastmile.planner.handlers_plans import Run
from lastmile.planner.replanner import plan_day
from lastmile.planner.settings import PlannerSettings
from lastmile.planner.store import PlannerStore

pytestmark = pytest.mark.integration
MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
DAY = date(2026, 12, 1)


@dataclass
class Planned:
    url: str
    deps: Any
    depot: str
    routes: list[dict[str, Any]]  # with their stops


@asynccontextmanager
async def planned(
    postgres: Any,
    make_order: Any,
    lats: list[float],
    vehicle: dict[str, Any] | None = None,
    vehicles: int = 1,
) -> AsyncIterator[Planned]:
    """A planner on PostgreSQL whose day has these orders planned, and is idle."""
    url = await postgres("planner")
    settings = PlannerSettings(
        database_url=url,
        ops_token=TEST_OPS_TOKEN,
        replan_debounce_s=0.05,
        solver_timeout_s=0.3,
        solver_processes=0,
    )
    bus = InMemoryBus()
    await bus.start()
    app = create_app(settings, bus=bus, clock=Clock(epoch=MORNING))
    try:
        async with app_client(app) as client:
            body = {"name": "Mitte", "lat": 52.52, "lon": 13.40}
            depot = (await client.post("/v1/depots", json=body, headers=ops_headers())).json()
            for _ in range(vehicles):
                spec = {"depot_id": depot["id"], **(vehicle or {})}
                reply = await client.post("/v1/vehicles", json=spec, headers=ops_headers())
                assert reply.status_code == 201, reply.text
            for lat in lats:
                await publish(bus, make_order(depot["id"], lat))
            deps = app.state.deps
            routes = await eventually(lambda: _all_planned(client, deps, len(lats)), timeout=30)
            yield Planned(url, deps, depot["id"], routes)
    finally:
        await bus.stop()


async def _all_planned(client: httpx.AsyncClient, deps: Any, count: int) -> list[dict[str, Any]] | None:
    reply = await client.get("/v1/routes", params={"date": DAY.isoformat()}, headers=ops_headers())
    routes = [r for r in reply.json() if r["stops"]]
    placed = sum(len(r["stops"]) for r in routes)
    return routes if placed == count and deps.replanner.idle else None


async def someone_waits_for_a_lock(url: str) -> bool:
    """A backend of this database is waiting for a row (or transaction) lock."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
        return bool(await conn.fetchval(query, name))
    finally:
        await conn.close()


async def handle(session: Any, deps: Any, event: Any) -> None:
    """One event of a batch, then the flush a query for the next event would make."""
    handler = handlers.on_done if isinstance(event, ev.Delivered) else handlers.on_out_for_delivery
    await handler(session, event.envelope("test"), event, deps)
    await session.flush()


async def test_a_plan_saved_while_a_batch_of_delivery_events_changes_its_jobs_does_not_deadlock(
    postgres: Any, make_order: Any
) -> None:
    async with planned(postgres, make_order, [52.53, 52.54]) as day:
        deps = day.deps
        first, second = sorted(s["order_id"] for s in day.routes[0]["stops"])
        vehicle = day.routes[0]["vehicle_id"]
        done = [ev.Delivered(order_id=o, vehicle_id=vehicle, at=MORNING) for o in (second, first)]

        # Three hours on, a re-plan moves every planned arrival: it changes both jobs' rows.
        deps.clock = Clock(epoch=MORNING + timedelta(hours=3))
        async with deps.db.transaction() as batch:
            # A batch of deliveries.v1 in one transaction, its events in the order they came (the later job
            # first).
            batch.info["batch"] = done
            await handle(batch, deps, done[0])
            saving = asyncio.create_task(plan_day(deps, Run(day.depot, DAY, "replan", {"test": 1}, ())))
            await eventually(lambda: saving.done() or someone_waits_for_a_lock(day.url), timeout=30)
            assert not saving.done(), "the plan was saved without meeting the batch's locks"
            await handle(batch, deps, done[1])
        await asyncio.wait_for(saving, timeout=30)  # raises the deadlock, if there was one

        async with deps.db.read() as session:
            jobs = {j.order_id: j.status for j in await PlannerStore(session).jobs(day.depot, DAY)}
        assert jobs == {first: "delivered", second: "delivered"}


async def test_two_batches_starting_the_same_routes_in_opposite_orders_do_not_deadlock(
    postgres: Any, make_order: Any
) -> None:
    vans = {"capacity_parcels": 2}  # two stops each: two routes
    async with planned(postgres, make_order, [52.53, 52.54, 52.55, 52.56], vans, vehicles=2) as day:
        assert len(day.routes) == 2
        (x1, x2), (y1, y2) = ([s["order_id"] for s in r["stops"]] for r in day.routes)

        def out(order_id: str) -> ev.OutForDelivery:
            route = next(r for r in day.routes if any(s["order_id"] == order_id for s in r["stops"]))
            return ev.OutForDelivery(
                order_id=order_id, vehicle_id=route["vehicle_id"], route_id=route["route_id"], at=MORNING
            )

        first, second = [out(x1), out(y1)], [out(y2), out(x2)]  # the routes in opposite orders

        async def other_batch() -> None:
            async with day.deps.db.transaction() as session:
                session.info["batch"] = second
                for event in second:
                    await handle(session, day.deps, event)

        async with day.deps.db.transaction() as session:
            session.info["batch"] = first
            await handle(session, day.deps, first[0])
            other = asyncio.create_task(other_batch())
            await eventually(lambda: other.done() or someone_waits_for_a_lock(day.url), timeout=30)
            assert not other.done(), "the other batch ran without meeting this one's locks"
            await handle(session, day.deps, first[1])
        await asyncio.wait_for(other, timeout=30)  # raises the deadlock, if there was one

        async with day.deps.db.read() as session:
            store = PlannerStore(session)
            assert {j.status for j in await store.jobs(day.depot, DAY)} == {"out"}
            assert {r.status for r in await store.routes(day.depot, DAY)} == {"started"}
