"""Planner's use cases: fleet (ops), jobs from orders.v1, progress from deliveries.v1, and (re-)planning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import NotFound
from lastmile.common.ids import new_id
from lastmile.planner import domain
from lastmile.planner.settings import PlannerSettings
from lastmile.planner.solver import Solver
from lastmile.planner.store import DepotRow, JobRow, PlannerStore, RouteRow, VehicleRow

log = logging.getLogger(__name__)
SOURCE = "planner"

SOLVE_SECONDS = Histogram(
    "lastmile_planner_solve_duration_seconds",
    "Time VROOM took for one depot-day",
    ["depot"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOBS_PLANNED = Counter("lastmile_planner_jobs_planned_total", "Jobs put on a route", ["depot"])
JOBS_UNASSIGNED = Counter(
    "lastmile_planner_jobs_unassigned_total", "Jobs left out, by reason", ["depot", "reason"]
)

OPEN = ("pending", "planned", "unassigned")
PROGRESS_STATUS: dict[type[ev.Payload], str] = {
    ev.OutForDelivery: "out",
    ev.Delivered: "delivered",
    ev.DeliveryFailed: "failed",
}


@dataclass
class Deps:
    db: Database
    clock: Clock
    settings: PlannerSettings
    solver: Solver
    replanner: Replanner = field(init=False)


# ---------------------------------------------------------------------------------------------------------
# Fleet (ops)


async def create_depot(spec: domain.DepotSpec, deps: Deps) -> DepotRow:
    row = DepotRow(id=spec.id, spec=spec.__dict__, created_at=deps.clock.now())
    async with deps.db.transaction() as session:
        session.add(row)
        outbox.add(session, depot_event(spec), source=SOURCE)
    return row


def depot_event(spec: domain.DepotSpec) -> ev.DepotUpserted:
    return ev.DepotUpserted(
        depot_id=spec.id,
        name=spec.name,
        location=ev.GeoPoint(lat=spec.lat, lon=spec.lon),
        timezone=spec.timezone,
        service_radius_km=spec.service_radius_km,
        opens=spec.opens,
        closes=spec.closes,
    )


async def create_vehicle(spec: domain.VehicleSpec, deps: Deps) -> VehicleRow:
    async with deps.db.transaction() as session:
        if await PlannerStore(session).depot(spec.depot_id) is None:
            raise NotFound(f"Depot {spec.depot_id} not found")
        row = VehicleRow(
            id=spec.id,
            depot_id=spec.depot_id,
            spec={**spec.__dict__, "skills": list(spec.skills)},
            created_at=deps.clock.now(),
        )
        session.add(row)
    return row


# ---------------------------------------------------------------------------------------------------------
# Events


async def on_order(session: AsyncSession, envelope: ev.Envelope, event: ev.OrderSnapshot, deps: Deps) -> None:
    """A new or changed order becomes a pending job of its depot's day, and that day is re-planned."""
    store = PlannerStore(session)
    depot = await store.depot(event.depot_id)
    if depot is None:
        raise NotFound(f"order {event.order_id} names unknown depot {event.depot_id}")
    job = await store.job(event.order_id)
    if job is not None and (job.version >= event.version or job.status not in OPEN):
        return  # stale, or already being driven
    day = domain.service_date(domain.JobSpec.from_order(event), depot.to_spec().timezone)
    if job is None:
        job = JobRow(order_id=event.order_id, depot_id=event.depot_id)
        session.add(job)
    job.service_date, job.status, job.version = day, "pending", event.version
    job.order = event.model_dump(mode="json")
    _replan_after_commit(session, deps, event.depot_id, day)


async def on_order_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OrderCancelled, deps: Deps
) -> None:
    job = await PlannerStore(session).job(event.order_id)
    if job is None or job.status not in OPEN:
        return
    job.status = "cancelled"
    _replan_after_commit(session, deps, job.depot_id, job.service_date)


async def on_progress(session: AsyncSession, envelope: ev.Envelope, event: Any, deps: Deps) -> None:
    """Stops being driven or done are no longer the planner's to move."""
    store = PlannerStore(session)
    job = await store.job(event.order_id)
    if job is None:
        return
    job.status = PROGRESS_STATUS[type(event)]
    if job.route_id and isinstance(event, ev.OutForDelivery):
        route = await store.route(job.route_id)
        if route is not None:
            route.status = "started"


def _replan_after_commit(session: AsyncSession, deps: Deps, depot_id: str, day: date) -> None:
    Database.after_commit(session, lambda: deps.replanner.request(depot_id, day))


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.OrderCreated: on_order,
    ev.OrderUpdated: on_order,
    ev.OrderCancelled: on_order_cancelled,
    ev.OutForDelivery: on_progress,
    ev.Delivered: on_progress,
    ev.DeliveryFailed: on_progress,
}

# ---------------------------------------------------------------------------------------------------------
# Planning


async def plan_day(depot_id: str, day: date, deps: Deps) -> domain.Plan | None:
    """Re-plan a depot's day: every job not yet driven, on every vehicle whose route has not started."""
    async with deps.db.read() as session:
        store = PlannerStore(session)
        depot_row = await store.depot(depot_id)
        if depot_row is None:
            return None
        started = {r.vehicle_id for r in await store.routes(depot_id, day) if r.status == "started"}
        vehicles = [v.to_spec() for v in await store.vehicles(depot_id) if v.id not in started]
        jobs = [j.to_spec() for j in await store.jobs(depot_id, day, OPEN)]
    problem = domain.build_problem(depot_row.to_spec(), vehicles, jobs, day)
    began = time.perf_counter()
    solution = await asyncio.to_thread(deps.solver.solve, problem)
    SOLVE_SECONDS.labels(depot_id).observe(time.perf_counter() - began)
    plan = domain.read_solution(problem, solution, deps.settings.promise_margin_s)
    await _commit_plan(depot_id, day, plan, problem, deps)
    return plan


async def _commit_plan(
    depot_id: str, day: date, plan: domain.Plan, problem: domain.Problem, deps: Deps
) -> None:
    plan_id = new_id("pln")
    now = deps.clock.now()
    async with deps.db.transaction() as session:
        store = PlannerStore(session)
        routes = {r.vehicle_id: r for r in await store.routes(depot_id, day)}
        for planned in plan.routes:
            if not planned.stops:
                continue
            live = [s for s in planned.stops if await _still_open(store, s.order_id)]
            route = await _save_route(
                session, routes.get(planned.vehicle_id), planned, live, problem.depot, day, plan_id, now
            )
            for stop in live:
                await _schedule(session, store, stop, route, day, depot_id)
        planned_vehicles = {r.vehicle_id for r in plan.routes if r.stops}
        for vehicle_id, route in routes.items():
            if (
                vehicle_id not in planned_vehicles
                and route.status == "planned"
                and route.snapshot.get("stops")
            ):
                route.status, route.version, route.updated_at = "cancelled", route.version + 1, now
                cancelled = ev.RouteCancelled(
                    route_id=route.id, version=route.version, vehicle_id=vehicle_id, reason="no stops left"
                )
                outbox.add(session, cancelled, source=SOURCE)
        for order_id, (reason, detail) in plan.unassigned.items():
            job = await store.job(order_id)
            if job is None or job.status not in OPEN or (job.status == "unassigned" and job.reason == reason):
                continue
            job.status, job.reason, job.vehicle_id, job.route_id = "unassigned", reason, None, None
            JOBS_UNASSIGNED.labels(depot_id, reason).inc()
            outbox.add(
                session,
                ev.DeliveryUnassigned(order_id=order_id, depot_id=depot_id, reason=reason, detail=detail),
                source=SOURCE,
            )


async def _still_open(store: PlannerStore, order_id: str) -> bool:
    job = await store.job(order_id)
    return job is not None and job.status in OPEN


async def _save_route(
    session: AsyncSession,
    route: RouteRow | None,
    planned: domain.PlannedRoute,
    stops: list[domain.PlannedStop],
    depot: domain.DepotSpec,
    day: date,
    plan_id: str,
    now: Any,
) -> RouteRow:
    snapshot_stops = [_route_stop(s) for s in stops]
    if route is None:
        route = RouteRow(
            id=new_id("rte"), vehicle_id=planned.vehicle_id, depot_id=depot.id, service_date=day, version=0
        )
        session.add(route)
    elif route.snapshot.get("stops") == [s.model_dump(mode="json") for s in snapshot_stops]:
        return route  # nothing changed: no new version, no event
    route.version += 1
    route.status, route.plan_id, route.updated_at = "planned", plan_id, now
    home = ev.GeoPoint(lat=depot.lat, lon=depot.lon)
    payload_cls = ev.RoutePlanned if route.version == 1 else ev.RouteRevised
    snapshot = payload_cls(
        route_id=route.id,
        version=route.version,
        vehicle_id=planned.vehicle_id,
        depot_id=depot.id,
        plan_id=plan_id,
        service_date=day,
        start=home,
        end=home,
        start_at=planned.start_at,
        end_at=planned.end_at,
        distance_m=planned.distance_m,
        duration_s=planned.duration_s,
        stops=snapshot_stops,
    )
    route.snapshot = snapshot.model_dump(mode="json")
    outbox.add(session, snapshot, source=SOURCE)
    return route


def _route_stop(s: domain.PlannedStop) -> ev.RouteStop:
    return ev.RouteStop(
        stop_id=s.order_id,
        order_id=s.order_id,
        kind="pickup" if s.kind == "pickup" else "delivery",
        sequence=s.sequence,
        location=ev.GeoPoint(lat=s.lat, lon=s.lon),
        planned_arrival=s.arrival,
        planned_departure=s.departure,
        service_s=s.service_s,
        promised_window=ev.TimeWindow(start=s.promised[0], end=s.promised[1]),
        leg_distance_m=s.leg_distance_m,
        leg_duration_s=s.leg_duration_s,
    )


async def _schedule(
    session: AsyncSession,
    store: PlannerStore,
    stop: domain.PlannedStop,
    route: RouteRow,
    day: date,
    depot_id: str,
) -> None:
    job = await store.job(stop.order_id)
    assert job is not None
    unchanged = (
        job.status == "planned"
        and job.route_id == route.id
        and job.promised_start == stop.promised[0]
        and job.promised_end == stop.promised[1]
    )
    job.status, job.vehicle_id, job.route_id, job.reason = "planned", route.vehicle_id, route.id, None
    job.planned_arrival, job.promised_start, job.promised_end = (
        stop.arrival,
        stop.promised[0],
        stop.promised[1],
    )
    if unchanged:
        return
    JOBS_PLANNED.labels(depot_id).inc()
    outbox.add(
        session,
        ev.DeliveryScheduled(
            order_id=stop.order_id,
            depot_id=depot_id,
            vehicle_id=route.vehicle_id,
            route_id=route.id,
            route_version=route.version,
            planned_arrival=stop.arrival,
            promised_window=ev.TimeWindow(start=stop.promised[0], end=stop.promised[1]),
            service_date=day,
        ),
        source=SOURCE,
    )


class Replanner:
    """Collects depot-days to re-plan and plans them one at a time, a short debounce after the last request."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._pending: set[tuple[str, date]] = set()
        self._wake = asyncio.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    def request(self, depot_id: str, day: date) -> None:
        self._pending.add((depot_id, day))
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replanner")
        await self.resume()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def idle(self) -> bool:
        return not self._pending and not self._busy

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.deps.settings.replan_debounce_s)
            self._wake.clear()
            batch, self._pending = self._pending, set()
            self._busy = True
            try:
                for depot_id, day in sorted(batch):
                    try:
                        await plan_day(depot_id, day, self.deps)
                    except Exception:
                        log.exception("planning %s on %s failed; will retry", depot_id, day)
                        self.request(depot_id, day)
                        await asyncio.sleep(1.0)
            finally:
                self._busy = False

    async def resume(self) -> None:
        """After a restart: re-plan every day that has jobs waiting."""
        async with self.deps.db.read() as session:
            store = PlannerStore(session)
            for depot in await store.depots():
                days = await session.execute(
                    sa.select(JobRow.service_date)
                    .where(JobRow.depot_id == depot.id, JobRow.status == "pending")
                    .distinct()
                )
                for (day,) in days:
                    self.request(depot.id, day)
