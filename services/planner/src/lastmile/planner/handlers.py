"""Planner's use cases: fleet (ops), jobs from orders.v1, progress and delays from deliveries.v1, devices and
positions; planning itself is in `handlers_plans.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

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
from lastmile.planner.solver import SharedSolver, SolverPool
from lastmile.planner.store import (
    DepotRow,
    DeviceRow,
    DriverRow,
    JobRow,
    PlannerStore,
    PlanRow,
    PositionRow,
    VehicleRow,
)
from lastmile.planner.travel import TravelTimes

log = logging.getLogger(__name__)
SOURCE = "planner"

OPEN = ("pending", "planned", "unassigned", "out")  # jobs a re-plan may still place
DONE = ("delivered", "failed")


class Replans(Protocol):
    def request(
        self, depot_id: str, day: date, trigger: str, plan_id: str | None = None, wave: str | None = None
    ) -> None: ...


@dataclass
class Deps:
    db: Database
    clock: Clock
    settings: PlannerSettings
    solver: SolverPool | SharedSolver
    travel: TravelTimes
    replanner: Replans = field(init=False)


# ---------------------------------------------------------------------------------------------------------
# Fleet (ops)


async def create_depot(spec: domain.DepotSpec, deps: Deps) -> DepotRow:
    row = DepotRow(id=spec.id, spec=spec.to_dict(), created_at=deps.clock.now())
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
        service_area=[ev.GeoPoint(lat=lat, lon=lon) for lat, lon in spec.service_area] or None,
        opens=spec.opens,
        closes=spec.closes,
    )


async def create_vehicle(spec: domain.VehicleSpec, deps: Deps) -> VehicleRow:
    async with deps.db.transaction() as session:
        if await PlannerStore(session).depot(spec.depot_id) is None:
            raise NotFound(f"Depot {spec.depot_id} not found")
        row = VehicleRow(id=spec.id, depot_id=spec.depot_id, spec=spec.to_dict(), created_at=deps.clock.now())
        session.add(row)
    return row


async def create_driver(driver_id: str, name: str, vehicle_id: str | None, deps: Deps) -> DriverRow:
    async with deps.db.transaction() as session:
        if vehicle_id is not None and await PlannerStore(session).vehicle(vehicle_id) is None:
            raise NotFound(f"Vehicle {vehicle_id} not found")
        row = DriverRow(id=driver_id, name=name, vehicle_id=vehicle_id, created_at=deps.clock.now())
        session.add(row)
    return row


async def request_plan(depot_id: str, day: date, kind: str, deps: Deps) -> PlanRow:
    """A plan on demand: recorded as queued, then run by the re-planner in the background."""
    async with deps.db.transaction() as session:
        if await PlannerStore(session).depot(depot_id) is None:
            raise NotFound(f"Depot {depot_id} not found")
        row = PlanRow.queued(new_id("pln"), depot_id, day, kind, {"on_demand": 1}, deps.clock.now())
        session.add(row)
    deps.replanner.request(depot_id, day, "on_demand", plan_id=row.id)
    return row


# ---------------------------------------------------------------------------------------------------------
# Orders


async def on_order(session: AsyncSession, envelope: ev.Envelope, event: ev.OrderSnapshot, deps: Deps) -> None:
    """A new or changed order becomes (or changes) a job of its depot's day, and that day is re-planned."""
    store = PlannerStore(session)
    depot = await store.depot(event.depot_id)
    if depot is None:
        raise NotFound(f"order {event.order_id} names unknown depot {event.depot_id}")
    job = await _job(session, event.order_id)
    if job is not None and (job.version >= event.version or job.status not in OPEN):
        return  # stale, or already done
    day = domain.service_date(domain.JobSpec.from_order(event), depot.to_spec().timezone)
    trigger = "order_created"
    if job is None:
        job = JobRow(order_id=event.order_id, depot_id=event.depot_id, status="pending", lateness_s=0)
        session.add(job)
    else:
        trigger = _update_trigger(job, event)
        if job.service_date != day:
            _leave_day(session, deps, job)
            job.status = "pending"
        if trigger == "address_changed" or _windows_changed(job, event):
            job.promised_start = job.promised_end = None  # a new address or window: a new promise
    job.service_date, job.version = day, event.version
    job.order = event.model_dump(mode="json")
    _replan_after_commit(session, deps, event.depot_id, day, trigger)


async def _job(session: AsyncSession, order_id: str) -> JobRow | None:
    """The job an event changes. The first call in a transaction locks every job of its batch of events at
    once, then their routes, in the order a plan being saved takes them (see `PlannerStore.lock_jobs`)."""
    store = PlannerStore(session)
    if "jobs" not in session.info:
        batch = session.info.get("batch") or ()
        ids = {order_id} | {o for p in batch if (o := getattr(p, "order_id", None))}
        # held here: the session's identity map keeps only weak references, and `job` looks there first
        jobs = session.info["jobs"] = await store.lock_jobs(ids)
        session.info["routes"] = await store.lock_routes(j.route_id for j in jobs if j.route_id)
    return await store.job(order_id)


def _update_trigger(job: JobRow, event: ev.OrderSnapshot) -> str:
    before = job.order.get("destination", {})
    moved = (before.get("lat"), before.get("lon")) != (event.destination.lat, event.destination.lon)
    return "address_changed" if moved else "order_updated"


def _windows_changed(job: JobRow, event: ev.OrderSnapshot) -> bool:
    before = ev.OrderCreated.model_validate(job.order).time_windows
    return before != event.time_windows


def _leave_day(session: AsyncSession, deps: Deps, job: JobRow) -> None:
    """The order moved to another day: the day it leaves is re-planned without it."""
    _replan_after_commit(session, deps, job.depot_id, job.service_date, "order_moved")
    job.vehicle_id = job.route_id = None
    job.promised_start = job.promised_end = None


async def on_order_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OrderCancelled, deps: Deps
) -> None:
    job = await _job(session, event.order_id)
    if job is None or job.status not in OPEN:
        return
    job.status = "cancelled"
    _replan_after_commit(session, deps, job.depot_id, job.service_date, "order_cancelled")


# ---------------------------------------------------------------------------------------------------------
# Progress from the tracker


async def on_out_for_delivery(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OutForDelivery, deps: Deps
) -> None:
    """The vehicle left with the parcel: the stop stays on that vehicle, and the route has started."""
    job = await _job(session, event.order_id)
    if job is None or job.status not in OPEN:
        return
    job.status = "out"
    await _started(session, job)


async def _started(session: AsyncSession, job: JobRow) -> None:
    if job.route_id:
        route = await PlannerStore(session).route(job.route_id)
        if route is not None and route.status == "planned":
            route.status = "started"


async def on_done(session: AsyncSession, envelope: ev.Envelope, event: Any, deps: Deps) -> None:
    """Delivered or failed: the stop is done and stays done; a failure re-plans the rest of the day. Its route has
    started, whether or not the tracker's word of the start came first."""
    job = await _job(session, event.order_id)
    if job is None or job.status in DONE or job.status == "cancelled":
        return
    job.status = "delivered" if isinstance(event, ev.Delivered) else "failed"
    job.done_at = event.at
    await _started(session, job)
    if isinstance(event, ev.DeliveryFailed):
        _replan_after_commit(session, deps, job.depot_id, job.service_date, "stop_failed")


async def on_delayed(
    session: AsyncSession, envelope: ev.Envelope, event: ev.DeliveryDelayed, deps: Deps
) -> None:
    """A vehicle runs late: re-plan its day from where it is now, so customers hear of it before the window."""
    job = await _job(session, event.order_id)
    if job is None or job.status not in OPEN:
        return
    _replan_after_commit(session, deps, job.depot_id, job.service_date, "delay")


# ---------------------------------------------------------------------------------------------------------
# Devices and positions


async def on_device(
    session: AsyncSession, envelope: ev.Envelope, event: ev.DeviceUpserted, deps: Deps
) -> None:
    """Keep the tracker's device keys (hashes): the driver's app authenticates with them here too."""
    row = await session.get(DeviceRow, event.device_id)
    if row is None:
        session.add(
            DeviceRow(
                device_id=event.device_id,
                vehicle_id=event.vehicle_id,
                key_hash=event.key_hash,
                active=event.active,
                at=event.at,
            )
        )
    elif row.at <= event.at:
        row.vehicle_id, row.key_hash, row.active, row.at = (
            event.vehicle_id,
            event.key_hash,
            event.active,
            event.at,
        )


async def on_location(
    session: AsyncSession, envelope: ev.Envelope, event: ev.LocationReported, deps: Deps
) -> None:
    """Where each vehicle is, for the next re-plan; no re-plan of its own (pings are frequent)."""
    if event.suspect:
        return
    positions = session.info.get("positions")
    if positions is None:  # the batch's vehicles in one query, not one each
        batch = session.info.get("batch") or [event]
        ids = sorted({p.vehicle_id for p in batch if isinstance(p, ev.LocationReported)})
        positions = session.info["positions"] = await PlannerStore(session).positions(ids)
    row = positions.get(event.vehicle_id)
    if row is None:
        positions[event.vehicle_id] = row = PositionRow(
            vehicle_id=event.vehicle_id, lat=event.lat, lon=event.lon, recorded_at=event.recorded_at
        )
        session.add(row)
    elif row.recorded_at < event.recorded_at:
        row.lat, row.lon, row.recorded_at = event.lat, event.lon, event.recorded_at


def _replan_after_commit(session: AsyncSession, deps: Deps, depot_id: str, day: date, trigger: str) -> None:
    Database.after_commit(session, lambda: deps.replanner.request(depot_id, day, trigger))


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.OrderCreated: on_order,
    ev.OrderUpdated: on_order,
    ev.OrderCancelled: on_order_cancelled,
    ev.OutForDelivery: on_out_for_delivery,
    ev.Delivered: on_done,
    ev.DeliveryFailed: on_done,
    ev.DeliveryDelayed: on_delayed,
    ev.DeviceUpserted: on_device,
    ev.LocationReported: on_location,
}

# a position only ever moves forward (by the time it was recorded): handling one twice changes nothing, so
# locations.v1 (a record per ping) needs no inbox row each
INBOX_EXEMPT = frozenset({ev.LocationReported})
