"""The read side: what customers (tracking page) and ops (fleet, tracks, live feed) see; orders.v1 keeps the
tracking rows the page needs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common.auth import hash_secret
from lastmile.common.errors import NotFound
from lastmile.tracker import domain_views as views
from lastmile.tracker.deps import Deps
from lastmile.tracker.store import StopRow, TrackerStore, TrackingRow, VehicleStateRow

STREAM_LIFETIME_S = 3600.0  # EventSource reconnects by itself; a bounded stream frees what it holds


# ---------------------------------------------------------------------------------------------------------
# orders.v1: what the tracking page shows of an order (the token only as its hash)


async def on_order(session: AsyncSession, envelope: ev.Envelope, event: ev.OrderSnapshot, deps: Deps) -> None:
    token_hash = hash_secret(event.tracking_token)
    row = await session.get(TrackingRow, token_hash)
    if row is None:
        row = TrackingRow(token_hash=token_hash, order_id=event.order_id, version=0)
        session.add(row)
    if row.version >= event.version:
        return
    destination = event.destination
    row.version, row.merchant_name, row.reference = event.version, event.merchant_name, event.reference
    row.lat, row.lon, row.created_at = destination.lat, destination.lon, event.created_at
    row.address = [*destination.address_lines, *filter(None, [destination.postal_code, destination.city])]
    row.windows = [w.model_dump(mode="json") for w in event.time_windows]
    row.timezone = event.recipient.timezone


async def on_order_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OrderCancelled, deps: Deps
) -> None:
    row = await TrackerStore(session).tracking_of(event.order_id)
    if row is not None and row.cancelled_at is None:
        row.cancelled_at = event.cancelled_at
        row.expires_at = event.cancelled_at + timedelta(seconds=deps.settings.tracking_grace_s)


# ---------------------------------------------------------------------------------------------------------
# The customer's view


@dataclass(frozen=True)
class Tracked:
    view: views.TrackingView
    order_id: str
    vehicle_id: str | None


async def tracked(token: str, deps: Deps) -> Tracked | None:
    """The order a tracking token names, as its customer may see it; None when unknown or expired."""
    now = deps.clock.now()
    async with deps.db.read() as session:
        store = TrackerStore(session)
        row = await store.tracking(hash_secret(token))
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            return None
        stop = await store.stop(row.order_id)
        progress = await store.route_progress(stop.route_id) if stop is not None else None
        vehicle = await store.vehicle_state(stop.vehicle_id) if stop is not None else None
    facts = _stop_facts(stop, progress)
    position = views.Position(vehicle.lat, vehicle.lon, vehicle.recorded_at) if vehicle else None
    settings = deps.settings
    shown = views.MapSettings(
        settings.tracking_map_stops, settings.tracking_tiles_url, settings.tracking_tiles_attribution
    )
    view = views.tracking_view(_order_facts(row), facts, position, now, shown)
    return Tracked(view, row.order_id, stop.vehicle_id if stop else None)


def _order_facts(row: TrackingRow) -> views.OrderFacts:
    window = None
    if row.windows:
        first = row.windows[0]
        window = (datetime.fromisoformat(first["start"]), datetime.fromisoformat(first["end"]))
    return views.OrderFacts(
        reference=row.reference,
        merchant=row.merchant_name,
        created_at=row.created_at,
        lat=row.lat,
        lon=row.lon,
        address=row.address,
        window=window,
        timezone=row.timezone,
        cancelled_at=row.cancelled_at,
    )


def _stop_facts(stop: StopRow | None, progress: dict[str, Any] | None) -> views.StopFacts | None:
    """`progress`: the ETA engine's progress along the stop's route."""
    if stop is None:
        return None
    eta, before = stop.eta or stop.planned_arrival, None
    state = (progress or {}).get("stops", {}).get(stop.order_id)
    if state is not None and state.get("status") == "open" and state.get("eta") is not None:
        eta, before = datetime.fromtimestamp(state["eta"], eta.tzinfo), state.get("before")
    elif state is not None and state.get("status") == "arrived":
        before = 0
    promised = (stop.promised_start, stop.promised_end) if stop.promised_start and stop.promised_end else None
    return views.StopFacts(
        status=stop.status,
        scheduled_at=stop.scheduled_at,
        out_at=stop.out_at,
        arriving_at=stop.arriving_at,
        arrived_at=stop.arrived_at,
        completed_at=stop.completed_at,
        failure_reason=stop.failure_reason,
        promised=promised,
        eta=eta,
        stops_before=before,
    )


async def tracking_updates(token: str, deps: Deps) -> AsyncIterator[views.TrackingView | None]:
    """The view each time it changes; None (and the end) once the link stops working."""
    last, started = "", time.monotonic()
    while time.monotonic() - started < STREAM_LIFETIME_S:
        found = await tracked(token, deps)
        if found is None:
            yield None
            return
        data = found.view.model_dump_json(exclude={"updated_at"})
        if data != last:
            last = data
            yield found.view
        await _wait(deps, [found.order_id, *([found.vehicle_id] if found.vehicle_id else [])])


async def _wait(deps: Deps, keys: list[str]) -> None:
    with deps.changes.watch(keys) as changed, contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deps.settings.stream_poll_s):
            await changed.wait()


# ---------------------------------------------------------------------------------------------------------
# Ops: the fleet now, one vehicle's track, and the live feed of positions


def position_json(row: VehicleStateRow) -> dict[str, Any]:
    return {
        "vehicle_id": row.vehicle_id,
        "device_id": row.device_id,
        "lat": row.lat,
        "lon": row.lon,
        "recorded_at": row.recorded_at.isoformat(),
        "accuracy_m": row.accuracy_m,
        "speed_mps": row.speed_mps,
        "heading": row.heading,
        "battery": row.battery,
    }


async def fleet(deps: Deps) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        store = TrackerStore(session)
        rows = await store.fleet()
        routes = await store.current_routes([r.vehicle_id for r in rows])
    return [
        position_json(r)
        | {
            "route_id": routes[r.vehicle_id].id if r.vehicle_id in routes else None,
            "route_status": routes[r.vehicle_id].status if r.vehicle_id in routes else None,
        }
        for r in rows
    ]


async def position(vehicle_id: str, deps: Deps) -> dict[str, Any]:
    async with deps.db.read() as session:
        row = await TrackerStore(session).vehicle_state(vehicle_id)
    if row is None:
        raise NotFound(f"No position of vehicle {vehicle_id}")
    return position_json(row)


async def track(
    vehicle_id: str, since: datetime, until: datetime, limit: int, deps: Deps
) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        rows = await TrackerStore(session).track(vehicle_id, since, until, limit)
    return [
        {
            "lat": r.lat,
            "lon": r.lon,
            "recorded_at": r.recorded_at.isoformat(),
            "received_at": r.received_at.isoformat(),
            "speed_mps": r.speed_mps,
            "heading": r.heading,
            "accuracy_m": r.accuracy_m,
            "suspect": r.suspect,
            "device_id": r.device_id,
        }
        for r in rows
    ]


async def positions_updates(deps: Deps) -> AsyncIterator[dict[str, Any]]:
    """Each vehicle's live position as it moves (at most twice a second per stream)."""
    sent: dict[str, datetime] = {}
    cursor, started = deps.clock.now() - timedelta(seconds=1), time.monotonic()
    while time.monotonic() - started < STREAM_LIFETIME_S:
        async with deps.db.read() as session:
            rows = await TrackerStore(session).changed_since(cursor - timedelta(seconds=2))
        for row in rows:
            cursor = max(cursor, row.updated_at)
            if sent.get(row.vehicle_id) != row.recorded_at:
                sent[row.vehicle_id] = row.recorded_at
                yield position_json(row)
        await asyncio.sleep(0.5)
        await _wait(deps, ["*"])
