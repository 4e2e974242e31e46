"""Tracker's use cases: devices (ops), and the table of reactions to events. Pings, the ETA engine, drivers'
actions and the read side live in handlers_pings, handlers_eta, handlers_stops and handlers_views."""

from __future__ import annotations

import asyncio
import logging

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.auth import DEVICE_KEY_PREFIX, hash_secret, new_secret, same
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.errors import NotFound, Unauthorized
from lastmile.common.ids import new_id
from lastmile.common.runtime import BackgroundTask
from lastmile.tracker import handlers_eta, handlers_views
from lastmile.tracker.deps import SOURCE, Deps, Device
from lastmile.tracker.store import DeviceRow, TrackerStore

log = logging.getLogger(__name__)

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
    deps.devices.forget(device_id)


async def authenticate_device(key: str | None, deps: Deps, device_id: str | None = None) -> Device:
    """The device a key belongs to; when the caller also names its device (OsmAnd's `id`), they must agree."""
    if not key:
        raise Unauthorized("A device key is required")
    key_hash = hash_secret(key)
    device = deps.devices.get(key_hash)
    if device is None:
        async with deps.db.read() as session:
            row = await TrackerStore(session).device_for_key(key_hash)
        if row is None:
            raise Unauthorized("Unknown or revoked device key")
        device = Device(row.id, row.vehicle_id)
        deps.devices.put(key_hash, device)
    if device_id is not None and not same(device_id, device.id):
        raise Unauthorized("The device key does not belong to this device id")
    return device


class DeviceKeys(BackgroundTask):
    """Checks the cached device keys that are due, in one query a second (see DeviceCache)."""

    name = "tracker-device-keys"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.check()
            except Exception as exc:  # the database is away: entries age out by themselves (max_age_s)
                log.warning("checking device keys failed: %s", exc)

    async def check(self) -> None:
        cache = self.deps.devices
        due, cache.due = cache.due, set()
        if not due:
            return
        async with self.deps.db.read() as session:
            active = await TrackerStore(session).active_key_hashes(due)
        cache.confirm(active, due)


# ---------------------------------------------------------------------------------------------------------
# Reactions to events

SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.RoutePlanned: handlers_eta.on_route,
    ev.RouteRevised: handlers_eta.on_route,
    ev.RouteCancelled: handlers_eta.on_route_cancelled,
    ev.LocationReported: handlers_eta.on_location,
    ev.OrderCreated: handlers_views.on_order,
    ev.OrderUpdated: handlers_views.on_order,
    ev.OrderCancelled: handlers_views.on_order_cancelled,
}

# locations.v1 at thousands a second: a partition's positions are consumed in batches (LASTMILE_CONSUMER_BATCH)
# and need no inbox (the engine ignores a position not newer than the last it used for that vehicle).
INBOX_EXEMPT = frozenset({ev.LocationReported})
