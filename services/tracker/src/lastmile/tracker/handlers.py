"""Tracker's use cases: devices, pings, stop results, and the reactions to routes and locations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.auth import DEVICE_KEY_PREFIX, hash_secret, new_secret
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import Conflict, NotFound, Unauthorized
from lastmile.common.ids import new_id
from lastmile.tracker import domain
from lastmile.tracker.settings import TrackerSettings
from lastmile.tracker.store import (
    DeviceRow,
    PositionRow,
    RouteRow,
    StopRow,
    TrackerStore,
    TrackingRow,
    VehicleStateRow,
)

SOURCE = "tracker"

PINGS = Counter("lastmile_tracker_pings_total", "Pings received, by outcome", ["outcome"])
STOPS_COMPLETED = Counter(
    "lastmile_tracker_stops_completed_total",
    "Stops completed, by outcome and whether inside the window promised to the customer",
    ["outcome", "on_time"],
)
ETA_ERROR = Histogram(
    "lastmile_tracker_eta_error_seconds",
    "How far the stop's last ETA was from its completion, either way",
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
)


@dataclass(frozen=True)
class Deps:
    db: Database
    clock: Clock
    settings: TrackerSettings


@dataclass(frozen=True)
class Device:
    id: str
    vehicle_id: str


# ---------------------------------------------------------------------------------------------------------
# Devices (ops)


async def register_device(vehicle_id: str, name: str, deps: Deps) -> tuple[DeviceRow, str]:
    key = new_secret(DEVICE_KEY_PREFIX)
    row = DeviceRow(
        id=new_id("dev"),
        vehicle_id=vehicle_id,
        key_hash=hash_secret(key),
        name=name,
        created_at=deps.clock.now(),
    )
    async with deps.db.transaction() as session:
        session.add(row)
        outbox.add(session, _device_event(row, deps), source=SOURCE)
    return row, key


def _device_event(row: DeviceRow, deps: Deps) -> ev.DeviceUpserted:
    return ev.DeviceUpserted(
        device_id=row.id,
        vehicle_id=row.vehicle_id,
        key_hash=row.key_hash,
        active=row.revoked_at is None,
        at=deps.clock.now(),
    )


async def revoke_device(device_id: str, deps: Deps) -> None:
    async with deps.db.transaction() as session:
        row = await TrackerStore(session).device(device_id)
        if row is None:
            raise NotFound(f"Device {device_id} not found")
        if row.revoked_at is None:
            row.revoked_at = deps.clock.now()
            outbox.add(session, _device_event(row, deps), source=SOURCE)


async def authenticate_device(key: str | None, deps: Deps) -> Device:
    if not key:
        raise Unauthorized("A device key is required")
    async with deps.db.read() as session:
        row = await TrackerStore(session).device_for_key(hash_secret(key))
    if row is None:
        raise Unauthorized("Unknown or revoked device key")
    return Device(row.id, row.vehicle_id)


# ---------------------------------------------------------------------------------------------------------
# Drivers' phones


async def record_pings(pings: list[domain.PingIn], device: Device, deps: Deps) -> dict[str, int]:
    """Validate, store and publish; duplicates (same device and time) are absorbed. Returns counts by outcome."""
    now = deps.clock.now()
    counts: dict[str, int] = {}
    async with deps.db.transaction() as session:
        store = TrackerStore(session)
        state = await store.vehicle_state(device.vehicle_id)
        for ping in pings:
            verdict = domain.judge_ping(
                ping,
                now,
                max_future_skew_s=deps.settings.max_future_skew_s,
                max_age_s=deps.settings.max_ping_age_s,
            )
            outcome = (
                verdict.reason if not verdict.accepted else await _store_ping(session, ping, device, now)
            )
            counts[outcome] = counts.get(outcome, 0) + 1
            PINGS.labels(outcome).inc()
            if outcome != "ok":
                continue
            if state is None:
                state = VehicleStateRow(
                    vehicle_id=device.vehicle_id, lat=ping.lat, lon=ping.lon, recorded_at=ping.recorded_at
                )
                session.add(state)
            elif (
                ping.recorded_at > state.recorded_at
            ):  # a late ping is kept but never moves the live state back
                state.lat, state.lon, state.recorded_at = ping.lat, ping.lon, ping.recorded_at
            outbox.add(session, _location(ping, device, now), source=SOURCE)
    return counts


async def _store_ping(session: AsyncSession, ping: domain.PingIn, device: Device, now: Any) -> str:
    exists = await session.execute(
        sa.select(PositionRow.id).where(
            PositionRow.device_id == device.id, PositionRow.recorded_at == ping.recorded_at
        )
    )
    if exists.first() is not None:
        return "duplicate"
    session.add(
        PositionRow(
            vehicle_id=device.vehicle_id,
            device_id=device.id,
            lat=ping.lat,
            lon=ping.lon,
            recorded_at=ping.recorded_at,
            received_at=now,
            speed_mps=ping.speed_mps,
            accuracy_m=ping.accuracy_m,
        )
    )
    return "ok"


def _location(ping: domain.PingIn, device: Device, now: Any) -> ev.LocationReported:
    return ev.LocationReported(
        vehicle_id=device.vehicle_id,
        device_id=device.id,
        lat=ping.lat,
        lon=ping.lon,
        recorded_at=ping.recorded_at,
        received_at=now,
        speed_mps=ping.speed_mps,
        heading=ping.heading,
        accuracy_m=ping.accuracy_m,
        battery=ping.battery,
    )


async def complete_stop(order_id: str, cmd: domain.CompleteStop, device: Device, deps: Deps) -> StopRow:
    """Delivered (with proof) or failed (with a reason), by the driver of the vehicle the stop is on."""
    now = deps.clock.now()
    async with deps.db.transaction() as session:
        store = TrackerStore(session)
        stop = await store.stop(order_id)
        if stop is None or stop.vehicle_id != device.vehicle_id:
            raise NotFound(f"Stop {order_id} is not on this vehicle's route")
        if stop.status in ("delivered", "failed"):
            raise Conflict(f"Stop {order_id} is already {stop.status}", code="stop-completed")
        if stop.status == "planned":
            _out_for_delivery(session, stop, now)
        stop.status, stop.completed_at = cmd.outcome, now
        stop.proof = cmd.model_dump(exclude_none=True)
        outbox.add(session, domain.outcome_event(order_id, device.vehicle_id, cmd, now), source=SOURCE)
        route = await store.route(stop.route_id)
        if route is not None and all(
            s.status in ("delivered", "failed") for s in await store.stops(route.id)
        ):
            route.status = "done"
        promised = _promised_window(route, order_id)
    STOPS_COMPLETED.labels(
        cmd.outcome, str(promised is not None and promised[0] <= now <= promised[1]).lower()
    ).inc()
    if stop.eta is not None:
        ETA_ERROR.observe(abs((now - stop.eta).total_seconds()))
    return stop


def _promised_window(route: RouteRow | None, order_id: str) -> tuple[datetime, datetime] | None:
    for s in (route.snapshot or {}).get("stops", []) if route is not None else []:
        if s["order_id"] == order_id and s.get("promised_window"):
            window = ev.TimeWindow.model_validate(s["promised_window"])
            return window.start, window.end
    return None


def _out_for_delivery(session: AsyncSession, stop: StopRow, now: Any) -> None:
    stop.status = "out"
    event = ev.OutForDelivery(
        order_id=stop.order_id,
        vehicle_id=stop.vehicle_id,
        route_id=stop.route_id,
        eta=stop.eta or stop.planned_arrival,
        at=now,
    )
    outbox.add(session, event, source=SOURCE)


# ---------------------------------------------------------------------------------------------------------
# Events


async def on_route(session: AsyncSession, envelope: ev.Envelope, event: ev.RouteSnapshot, deps: Deps) -> None:
    """Keep the latest version of the vehicle's route and its stops; stops already done stay as they are."""
    store = TrackerStore(session)
    route = await store.route(event.route_id)
    if route is not None and route.version >= event.version:
        return
    if route is None:
        route = RouteRow(
            id=event.route_id, vehicle_id=event.vehicle_id, service_date=event.service_date, status="planned"
        )
        session.add(route)
    route.version, route.snapshot, route.updated_at = (
        event.version,
        event.model_dump(mode="json"),
        envelope.time,
    )
    if route.status == "cancelled":
        route.status = "planned"
    for s in event.stops:
        stop = await store.stop(s.order_id)
        if stop is None:
            stop = StopRow(order_id=s.order_id, status="planned")
            session.add(stop)
        elif stop.status in ("delivered", "failed") and stop.route_id == event.route_id:
            continue
        stop.route_id, stop.vehicle_id, stop.sequence = event.route_id, event.vehicle_id, s.sequence
        stop.planned_arrival, stop.eta = s.planned_arrival, s.planned_arrival
        if stop.status in ("delivered", "failed"):
            stop.status = "planned"  # a failed order re-planned onto a new route
        if route.status == "started" and stop.status == "planned":
            _out_for_delivery(session, stop, envelope.time)


async def on_route_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.RouteCancelled, deps: Deps
) -> None:
    route = await TrackerStore(session).route(event.route_id)
    if route is not None and route.version < event.version:
        route.version, route.status = event.version, "cancelled"


async def on_location(
    session: AsyncSession, envelope: ev.Envelope, event: ev.LocationReported, deps: Deps
) -> None:
    """The first position of a vehicle with a planned route starts it: its stops are out for delivery."""
    store = TrackerStore(session)
    route = await store.current_route(event.vehicle_id)
    if route is None or route.status != "planned":
        return
    route.status = "started"
    for stop in await store.stops(route.id):
        if stop.status == "planned":
            _out_for_delivery(session, stop, event.recorded_at)


async def on_order_created(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OrderCreated, deps: Deps
) -> None:
    token_hash = hash_secret(event.tracking_token)
    if await session.get(TrackingRow, token_hash) is None:
        session.add(TrackingRow(token_hash=token_hash, order_id=event.order_id))


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.RoutePlanned: on_route,
    ev.RouteRevised: on_route,
    ev.RouteCancelled: on_route_cancelled,
    ev.LocationReported: on_location,
    ev.OrderCreated: on_order_created,
}
