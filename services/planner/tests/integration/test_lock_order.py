"""On PostgreSQL a plan being saved and a batch of delivery events changing the same jobs take their row locks in
one order, so they wait for each other instead of deadlocking (a deadlock cost a second and a retry of the
whole plan or batch: a simulated day on the distributed platform hit a dozen)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.testing import (
    TEST_OPS_TOKEN,
    app_client,
    eventually,
    ops_headers,
    publish,
)
from lastmile.planner import handlers
from lastmile.planner.app import create_app
from lastmile.planner.handlers_plans import Run
from lastmile.planner.replanner import plan_day
from lastmile.planner.settings import PlannerSettings
from lastmile.planner.store import PlannerStore

pytestmark = pytest.mark.integration
MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
DAY = date(2026, 12, 1)


async def someone_waits_for_a_lock(url: str) -> bool:
    """A backend of this database is waiting for a row (or transaction) lock."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
        return bool(await conn.fetchval(query, name))
    finally:
        await conn.close()


async def test_a_plan_saved_while_a_batch_of_delivery_events_changes_its_jobs_does_not_deadlock(
    postgres: Any, make_order: Any
) -> None:
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
            reply = await client.post("/v1/vehicles", json={"depot_id": depot["id"]}, headers=ops_headers())
            assert reply.status_code == 201, reply.text
            for lat in (52.53, 52.54):
                await publish(bus, make_order(depot["id"], lat))
            deps = app.state.deps

            async def planned() -> list[str] | None:
                routes = (
                    await client.get("/v1/routes", params={"date": DAY.isoformat()}, headers=ops_headers())
                ).json()
                stops = [s["order_id"] for r in routes for s in r["stops"]]
                return stops if len(stops) == 2 and deps.replanner.idle else None

            first, second = sorted(await eventually(planned, timeout=30))
            vehicle = reply.json()["id"]
            done = [ev.Delivered(order_id=o, vehicle_id=vehicle, at=MORNING) for o in (second, first)]

            # Three hours on, a re-plan moves every planned arrival: it changes both jobs' rows.
            deps.clock = Clock(epoch=MORNING + timedelta(hours=3))
            async with deps.db.transaction() as batch:
                # A batch of deliveries.v1 in one transaction, its events in the order they came (the later
                # job first), flushed between events as a query for the next one would.
                batch.info["batch"] = done
                await handlers.on_done(batch, done[0].envelope("test"), done[0], deps)
                await batch.flush()
                saving = asyncio.create_task(plan_day(deps, Run(depot["id"], DAY, "replan", {"test": 1}, ())))
                await eventually(lambda: saving.done() or someone_waits_for_a_lock(url), timeout=30)
                assert not saving.done(), "the plan was saved without meeting the batch's locks"
                await handlers.on_done(batch, done[1].envelope("test"), done[1], deps)
            await asyncio.wait_for(saving, timeout=30)  # raises the deadlock, if there was one

            async with deps.db.read() as session:
                jobs = {j.order_id: j.status for j in await PlannerStore(session).jobs(depot["id"], DAY)}
            assert jobs == {first: "delivered", second: "delivered"}
    finally:
        await bus.stop()
