"""Order intake's use cases, from HTTP and from events; SUBSCRIPTIONS at the bottom is the reaction graph."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.auth import MERCHANT_KEY_PREFIX, hash_secret, new_secret
from lastmile.common.bus import EventHandler
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import Conflict, NotFound, Unauthorized
from lastmile.common.ids import new_id
from lastmile.order_intake import domain
from lastmile.order_intake.settings import IntakeSettings
from lastmile.order_intake.store import ApiKeyRow, IntakeStore, MerchantRow, OrderRow, StatusRow

SOURCE = "order-intake"

ORDERS_RECEIVED = Counter(
    "lastmile_order_intake_orders_received_total", "Orders accepted, by merchant id", ["merchant"]
)


@dataclass(frozen=True)
class Deps:
    db: Database
    clock: Clock
    settings: IntakeSettings


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str


# ---------------------------------------------------------------------------------------------------------
# Merchants and keys (ops)


async def create_merchant(name: str, deps: Deps) -> tuple[Merchant, str, str]:
    """A merchant and its first API key; the key is returned once and only its hash is kept."""
    now = deps.clock.now()
    merchant = MerchantRow(id=new_id("mer"), name=name, created_at=now, keys_version=0)
    async with deps.db.transaction() as session:
        store = IntakeStore(session)
        await store.add_merchant(merchant)
        key_id, key = await _add_key(store, merchant.id, "default", deps)
        await _announce_keys(store, merchant.id, deps)
    return Merchant(merchant.id, merchant.name), key_id, key


async def create_api_key(merchant_id: str, label: str, deps: Deps) -> tuple[str, str]:
    async with deps.db.transaction() as session:
        store = IntakeStore(session)
        if await store.merchant(merchant_id) is None:
            raise NotFound(f"Merchant {merchant_id} not found")
        key_id, key = await _add_key(store, merchant_id, label, deps)
        await _announce_keys(store, merchant_id, deps)
        return key_id, key


async def _add_key(store: IntakeStore, merchant_id: str, label: str, deps: Deps) -> tuple[str, str]:
    key = new_secret(MERCHANT_KEY_PREFIX)
    row = ApiKeyRow(
        id=new_id("key"),
        merchant_id=merchant_id,
        key_hash=hash_secret(key),
        label=label,
        created_at=deps.clock.now(),
    )
    await store.add_key(row)
    return row.id, key


async def revoke_api_key(merchant_id: str, key_id: str, deps: Deps) -> None:
    async with deps.db.transaction() as session:
        store = IntakeStore(session)
        row = await store.key(key_id)
        if row is None or row.merchant_id != merchant_id:
            raise NotFound(f"Key {key_id} not found")
        if row.revoked_at is None:
            row.revoked_at = deps.clock.now()
            await session.flush()
            await _announce_keys(store, merchant_id, deps)


async def _announce_keys(store: IntakeStore, merchant_id: str, deps: Deps) -> None:
    """Services with merchant routes of their own authenticate with the hashes this event carries."""
    merchant = await store.merchant(merchant_id)
    assert merchant is not None
    await store.session.flush()
    merchant.keys_version += 1
    event = ev.MerchantKeysChanged(
        merchant_id=merchant_id,
        name=merchant.name,
        key_hashes=await store.active_key_hashes(merchant_id),
        version=merchant.keys_version,
        at=deps.clock.now(),
    )
    outbox.add(store.session, event, source=SOURCE)


async def authenticate_merchant(key: str | None, deps: Deps) -> Merchant:
    if not key:
        raise Unauthorized("A merchant API key is required: Authorization: Bearer <key>")
    async with deps.db.read() as session:
        row = await IntakeStore(session).merchant_for_key(hash_secret(key))
    if row is None:
        raise Unauthorized("Unknown or revoked API key")
    return Merchant(row.id, row.name)


# ---------------------------------------------------------------------------------------------------------
# Orders (merchants)


async def accept_order(cmd: domain.CreateOrder, merchant: Merchant, deps: Deps) -> OrderRow:
    """Persist the order and its orders.v1 event in one transaction, then acknowledge."""
    try:
        async with deps.db.transaction() as session:
            store = IntakeStore(session)
            existing = await store.order_by_reference(merchant.id, cmd.reference)
            if existing is not None:
                raise _duplicate(existing)
            depot = domain.choose_depot(
                await store.depots(), cmd.destination.lat, cmd.destination.lon, cmd.depot_id
            )
            order = domain.new_order(
                cmd,
                order_id=new_id("ord"),
                merchant_id=merchant.id,
                merchant_name=merchant.name,
                depot=depot,
                tracking_token=secrets.token_urlsafe(24),  # 192 bits: unguessable
                tracking_base_url=deps.settings.tracking_base_url,
                now=deps.clock.now(),
            )
            await store.add_order(order, "received")
            outbox.add(session, order, source=SOURCE)
    except IntegrityError as exc:  # a concurrent request with the same reference won the race
        async with deps.db.read() as session:
            existing = await IntakeStore(session).order_by_reference(merchant.id, cmd.reference)
        if existing is None:
            raise
        raise _duplicate(existing) from exc
    ORDERS_RECEIVED.labels(merchant.id).inc()
    return await get_order(order.order_id, merchant, deps)


def _duplicate(existing: OrderRow) -> Conflict:
    return Conflict(
        f"An order with reference {existing.reference!r} exists: {existing.id}",
        code="duplicate-reference",
        title="Duplicate reference",
    )


async def get_order(order_id: str, merchant: Merchant, deps: Deps) -> OrderRow:
    """Another merchant's order is reported as missing (404), never as forbidden."""
    async with deps.db.read() as session:
        row = await IntakeStore(session).order(order_id, merchant.id)
    if row is None:
        raise NotFound(f"Order {order_id} not found")
    return row


async def order_history(order_id: str, merchant: Merchant, deps: Deps) -> list[StatusRow]:
    await get_order(order_id, merchant, deps)
    async with deps.db.read() as session:
        return await IntakeStore(session).history(order_id)


# ---------------------------------------------------------------------------------------------------------
# Events


async def on_depot_upserted(session: AsyncSession, envelope: ev.Envelope, event: ev.DepotUpserted) -> None:
    await IntakeStore(session).upsert_depot(event)


async def on_delivery_event(session: AsyncSession, envelope: ev.Envelope, event: Any) -> None:
    """The order's status follows the delivery's lifecycle."""
    store = IntakeStore(session)
    row = await store.order(event.order_id, lock=True)
    if row is None:
        return
    new = domain.status_after(row.status, event)
    if new is None:
        return
    row.status = new
    row.updated_at = envelope.time
    await store.add_status(row.id, new, envelope.time, {"event": envelope.type, "event_id": str(envelope.id)})


SUBSCRIPTIONS: dict[type[ev.Payload], EventHandler] = {
    ev.DepotUpserted: on_depot_upserted,
    ev.DeliveryScheduled: on_delivery_event,
    ev.DeliveryUnassigned: on_delivery_event,
    ev.OutForDelivery: on_delivery_event,
    ev.EtaChanged: on_delivery_event,
    ev.Arrived: on_delivery_event,
    ev.Delivered: on_delivery_event,
    ev.DeliveryFailed: on_delivery_event,
}
