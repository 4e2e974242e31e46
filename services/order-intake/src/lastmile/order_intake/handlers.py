"""Order intake's use cases for merchants and keys (ops), authentication, and events; SUBSCRIPTIONS at the
bottom is the reaction graph. Orders' own use cases are in `handlers_orders.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.auth import MERCHANT_KEY_PREFIX, hash_secret, new_secret
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import NotFound, Unauthorized
from lastmile.common.ids import new_id
from lastmile.common.ratelimit import RateLimiter
from lastmile.order_intake import domain
from lastmile.order_intake.caches import AuthCache, Merchant, Snapshot
from lastmile.order_intake.settings import IntakeSettings
from lastmile.order_intake.store import ApiKeyRow, IntakeStore, MerchantRow
from lastmile.order_intake.writer import OrderWriter

log = logging.getLogger(__name__)
SOURCE = "order-intake"


@dataclass(frozen=True)
class Deps:
    db: Database
    clock: Clock
    settings: IntakeSettings
    keys: AuthCache = field(init=False)
    depots: Snapshot[list[domain.Depot]] = field(init=False)
    limiter: RateLimiter = field(init=False)
    writer: OrderWriter = field(init=False)

    def __post_init__(self) -> None:
        # frozen: the caches are built once, here, from the settings
        object.__setattr__(self, "keys", AuthCache(self.settings.auth_cache_seconds))
        object.__setattr__(self, "depots", Snapshot(self._load_depots, self.settings.depot_cache_seconds))
        limiter = RateLimiter(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)
        object.__setattr__(self, "limiter", limiter)
        writer = OrderWriter(self.db, self.clock, wait_s=self.settings.group_commit_wait_ms / 1000)
        object.__setattr__(self, "writer", writer)

    async def _load_depots(self) -> list[domain.Depot]:
        async with self.db.read() as session:
            return await IntakeStore(session).depots()


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
            deps.db.after_commit(session, deps.keys.clear)


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
    """The key's merchant; cached for `auth_cache_seconds` (a revocation clears this replica's cache)."""
    if not key:
        raise Unauthorized("A merchant API key is required: Authorization: Bearer <key>")

    async def load(key_hash: str) -> Merchant | None:
        async with deps.db.read() as session:
            found = await IntakeStore(session).merchant_for_key(key_hash)
        return Merchant(*found) if found else None

    merchant = await deps.keys.get_or_load(hash_secret(key), load)
    if merchant is None:
        raise Unauthorized("Unknown or revoked API key")
    return merchant


# ---------------------------------------------------------------------------------------------------------
# Upkeep


class IdempotencyJanitor:
    """Forgets stored responses older than `idempotency_ttl_hours`: a retry after that is a new request."""

    def __init__(self, deps: Deps, interval_s: float = 3600.0) -> None:
        self.deps, self.interval_s = deps, interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idempotency-janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def purge(self) -> int:
        before = self.deps.clock.now() - timedelta(hours=self.deps.settings.idempotency_ttl_hours)
        async with self.deps.db.transaction() as session:
            return await IntakeStore(session).forget_responses(before)

    async def _run(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception as exc:  # the next round retries; requests are unaffected
                log.warning("idempotency purge failed: %s", exc)
            await asyncio.sleep(self.interval_s)


# ---------------------------------------------------------------------------------------------------------
# Events


async def on_depot_upserted(
    session: AsyncSession, envelope: ev.Envelope, event: ev.DepotUpserted, deps: Deps
) -> None:
    await IntakeStore(session).upsert_depot(event)
    deps.db.after_commit(session, deps.depots.invalidate)


async def on_delivery_event(session: AsyncSession, envelope: ev.Envelope, event: Any, deps: Deps) -> None:
    """The order's status follows the delivery's lifecycle."""
    if not domain.moves_status(event):
        return  # most of the topic's events are ETA changes: no order to load
    store = IntakeStore(session)
    row = await store.order(event.order_id, lock=True)
    if row is None:
        return
    new = domain.status_after(row.status, event)
    if new is None:
        return
    row.status = new
    row.updated_at = envelope.time
    await store.add_statuses(
        [
            (
                row.id,
                new,
                envelope.time,
                {"event": envelope.type, "event_id": str(envelope.id), **domain.status_detail(event)},
            )
        ]
    )


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.DepotUpserted: on_depot_upserted,
    ev.DeliveryScheduled: on_delivery_event,
    ev.DeliveryUnassigned: on_delivery_event,
    ev.OutForDelivery: on_delivery_event,
    ev.EtaChanged: on_delivery_event,
    ev.Arrived: on_delivery_event,
    ev.Delivered: on_delivery_event,
    ev.DeliveryFailed: on_delivery_event,
}
