"""The tracker's writers on real PostgreSQL take their row locks in one order (routes by id, then stops by order
id), so two of them interleaved never deadlock. Each test drives the interleaving that deadlocked (in the
distributed day) step by step: the first transaction goes half-way, the second runs until PostgreSQL shows it
waiting for a lock, then the first finishes. With locks taken in different orders, PostgreSQL aborts one of them
with 'deadlock detected' after its deadlock_timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client
from lastmile.tracker import handlers_eta, handlers_stops
from lastmile.tracker.app import create_app
from lastmile.tracker.deps import Deps, Device
from lastmile.tracker.domain import CompleteStop
from lastmile.tracker.settings import TrackerSettings
from lastmile.tracker.store import StopRow

pytestmark = pytest.mark.integration
RouteMaker = Callable[..., ev.RoutePlanned]


@contextlib.asynccontextmanager
async def tracker_deps(url: str) -> AsyncIterator[Deps]:
    """The tracker's use cases on PostgreSQL (migrated by the app's lifespan), called directly."""
    bus = InMemoryBus()
    await bus.start()
    settings = TrackerSettings(database_url=url, ops_token=TEST_OPS_TOKEN, osmand_port=-1)
    app = create_app(settings, bus=bus)
    try:
        async with app_client(app):
            yield app.state.deps
    finally:
        await bus.stop()


async def handle(deps: Deps, payload: ev.Payload) -> None:
    """One routes.v1 event in a transaction of its own (the setup)."""
    async with deps.db.transaction() as session:
        await _handler(payload)(session, payload.envelope("planner"), payload, deps)


def _handler(payload: ev.Payload) -> Callable[..., Awaitable[None]]:
    return (
        handlers_eta.on_route_cancelled if isinstance(payload, ev.RouteCancelled) else handlers_eta.on_route
    )


async def routes_batch(
    deps: Deps, payloads: list[ev.Payload], halfway: asyncio.Event, go_on: asyncio.Event
) -> None:
    """A routes.v1 batch as the bus's `Dispatcher._handle_batch` runs it (one transaction, the batch in
    `session.info`), paused after its first event's changes reached the database (the autoflush that the next
    event's first statement makes)."""
    async with deps.db.transaction() as session:
        session.info["batch"] = payloads
        for n, payload in enumerate(payloads):
            await _handler(payload)(session, payload.envelope("planner"), payload, deps)
            if n == 0:
                await session.flush()
                halfway.set()
                await go_on.wait()


async def waiting_for_a_lock(admin: asyncpg.Connection, database: str) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", database
        )
    )


async def interleave(
    url: str,
    first: Callable[[asyncio.Event, asyncio.Event], Awaitable[None]],
    second: Callable[[], Awaitable[Any]],
) -> None:
    """`first` half-way; `second` until it waits for a lock (or is done); `first` to its end; both must
    succeed."""
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    halfway, go_on = asyncio.Event(), asyncio.Event()
    one = asyncio.create_task(first(halfway, go_on))
    two: asyncio.Task[Any] | None = None
    try:
        await asyncio.wait_for(halfway.wait(), 10)
        two = asyncio.create_task(second())
        deadline = asyncio.get_running_loop().time() + 10
        while not two.done() and not await waiting_for_a_lock(admin, database):
            assert asyncio.get_running_loop().time() < deadline, (
                "the second transaction neither ran nor waited"
            )
            await asyncio.sleep(0.02)
        go_on.set()
        results = await asyncio.wait_for(asyncio.gather(one, two, return_exceptions=True), 30)
    finally:
        go_on.set()
        for task in (one, two):
            if task is not None and not task.done():
                task.cancel()
        await admin.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"a transaction failed: {[str(f) for f in failures]}"


def points(orders: list[str]) -> list[tuple[str, float, float]]:
    return [(order, 48.10 + 0.01 * n, 11.50) for n, order in enumerate(orders, 1)]


async def stops_now(deps: Deps) -> dict[str, tuple[str, str]]:
    async with deps.db.read() as session:
        rows = (await session.execute(sa.select(StopRow))).scalars()
        return {r.order_id: (r.route_id, r.status) for r in rows}


async def test_a_routes_batch_moving_a_stop_and_a_completion_on_its_old_route_do_not_deadlock(
    postgres: Any, make_route: RouteMaker
) -> None:
    """The planner moves ord_y from rte_1 to rte_2 and revises rte_1, in one routes.v1 batch (rte_2 first),
    while veh_1's driver completes ord_x on rte_1: the completion re-estimates rte_1's stops, ord_y among them
    (the old code: the batch held ord_y and waited for rte_1, the completion held rte_1 and waited for ord_y)."""
    url = await postgres("tracker")
    async with tracker_deps(url) as deps:
        await handle(deps, make_route("veh_1", points(["ord_x", "ord_y"]), route_id="rte_1"))
        await handle(deps, make_route("veh_2", points(["ord_z"]), route_id="rte_2"))
        batch: list[ev.Payload] = [
            make_route("veh_2", points(["ord_z", "ord_y"]), route_id="rte_2", version=2),
            make_route("veh_1", points(["ord_x"]), route_id="rte_1", version=2),
        ]
        delivered = CompleteStop(outcome="delivered", recipient_name="Ada")

        async def first(halfway: asyncio.Event, go_on: asyncio.Event) -> None:
            await routes_batch(deps, batch, halfway, go_on)

        async def second() -> Any:
            return await handlers_stops.complete_stop("ord_x", delivered, Device("dev_1", "veh_1"), deps)

        await interleave(url, first, second)
        assert await stops_now(deps) == {
            "ord_x": ("rte_1", "delivered"),
            "ord_y": ("rte_2", "planned"),
            "ord_z": ("rte_2", "planned"),
        }


async def test_a_location_batch_takes_its_routes_in_id_order(postgres: Any, make_route: RouteMaker) -> None:
    """A transaction holding rte_1 that then takes rte_2 (the agreed order), while a batch of positions of veh_1
    (on rte_2) and veh_2 (on rte_1) moves their routes' progress (the old code took them in vehicle order:
    rte_2, then waited for rte_1)."""
    url = await postgres("tracker")
    async with tracker_deps(url) as deps:
        await handle(deps, make_route("veh_1", points(["ord_a"]), route_id="rte_2"))
        await handle(deps, make_route("veh_2", points(["ord_b"]), route_id="rte_1"))
        now = datetime.now(UTC)
        positions = [
            ev.LocationReported(
                vehicle_id=vehicle,
                device_id=f"dev_{vehicle}",
                lat=48.10,
                lon=11.50,
                recorded_at=now,
                received_at=now,
            )
            for vehicle in ("veh_1", "veh_2")
        ]

        async def first(halfway: asyncio.Event, go_on: asyncio.Event) -> None:
            async with deps.db.transaction() as session:
                await session.execute(sa.text("SELECT 1 FROM routes WHERE id = 'rte_1' FOR UPDATE"))
                halfway.set()
                await go_on.wait()
                await session.execute(sa.text("SELECT 1 FROM routes WHERE id = 'rte_2' FOR UPDATE"))

        async def second() -> None:
            async with deps.db.transaction() as session:
                session.info["batch"] = positions
                for position in positions:
                    await handlers_eta.on_location(session, position.envelope("tracker"), position, deps)

        await interleave(url, first, second)
        async with deps.db.read() as session:
            progressed = await session.execute(sa.text("SELECT id FROM routes WHERE progress IS NOT NULL"))
            assert sorted(progressed.scalars()) == ["rte_1", "rte_2"]
