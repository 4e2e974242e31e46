"""Merchant webhooks: subscriptions (from HTTP), one delivery per event and subscription (from deliveries.v1),
and the dispatcher that sends them, retries them for more than a day, and disables what keeps failing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import NotFound, Unprocessable
from lastmile.common.ids import new_id
from lastmile.common.runtime import BackgroundTask
from lastmile.notifier import webhooks
from lastmile.notifier.cache import TtlCache
from lastmile.notifier.metrics import PROVIDER_LATENCY, WEBHOOKS
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.store_webhooks import AttemptRow, DeliveryRow, SubscriptionRow, WebhookStore

if TYPE_CHECKING:
    from lastmile.notifier.handlers import Deps, Merchant

log = logging.getLogger(__name__)
SOURCE = "notifier"
EVENT_TYPES = (
    "delivery.scheduled",
    "delivery.unassigned",
    "delivery.out_for_delivery",
    "delivery.eta_changed",
    "delivery.delayed",
    "delivery.arrived",
    "delivery.delivered",
    "delivery.failed",
)


@dataclass(frozen=True)
class Target:
    id: str
    event_types: tuple[str, ...]


async def _active(store: WebhookStore, merchant_id: str) -> list[Target]:
    return [
        Target(s.id, tuple(s.event_types)) for s in await store.subscriptions(merchant_id, active_only=True)
    ]


def webhook_type(envelope: ev.Envelope) -> str:
    return envelope.type.removeprefix("lastmile.")


async def enqueue_webhooks(
    session: AsyncSession, merchant_id: str, envelope: ev.Envelope, dispatcher: WebhookDispatcher
) -> None:
    """One delivery per active subscription that wants this event, in the event's own transaction."""
    kind = webhook_type(envelope)
    subs = await dispatcher.subscriptions.get(
        merchant_id, lambda: _active(WebhookStore(session), merchant_id)
    )
    wanted = [s for s in subs if kind in s.event_types or "*" in s.event_types]
    if not wanted:
        return
    body = json.dumps(
        {"type": kind, "timestamp": envelope.time.isoformat(), "data": envelope.data}, separators=(",", ":")
    )
    now = dispatcher.clock.now()
    rows = [
        {
            "id": new_id("msg"),
            "subscription_id": s.id,
            "merchant_id": merchant_id,
            "order_id": envelope.subject,
            "event_id": str(envelope.id),
            "event_type": kind,
            "body": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for s in wanted
    ]
    await WebhookStore(session).enqueue(rows)
    Database.after_commit(session, dispatcher.wake)


# ---------------------------------------------------------------------------------------------------------
# Subscriptions (merchants, over HTTP)


async def _check_target(url: str, deps: Deps) -> None:
    try:
        _, host, port = webhooks.check_url(url)
        await webhooks.resolve(host, port, allow_private=deps.settings.webhooks_allow_private)
    except webhooks.UnsafeUrl as exc:
        raise Unprocessable(f"url: {exc}") from exc


def _check_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - {*EVENT_TYPES, "*"})
    if unknown or not event_types:
        raise Unprocessable(f"event_types: unknown {unknown}; choose from {list(EVENT_TYPES)} or '*'")
    return sorted(set(event_types))


async def create_subscription(
    merchant: Merchant, url: str, event_types: list[str], description: str, deps: Deps
) -> SubscriptionRow:
    await _check_target(url, deps)
    row = SubscriptionRow(
        id=new_id("whs"),
        merchant_id=merchant.id,
        url=url,
        event_types=_check_types(event_types),
        secret=webhooks.new_secret(),
        description=description,
        status="active",
        failures=0,
        created_at=deps.clock.now(),
    )
    async with deps.db.transaction() as session:
        session.add(row)
    deps.webhooks.subscriptions.forget(merchant.id)
    return row


async def get_subscription(merchant: Merchant, subscription_id: str, deps: Deps) -> SubscriptionRow:
    async with deps.db.read() as session:
        row = await WebhookStore(session).subscription(merchant.id, subscription_id)
    if row is None:
        raise NotFound(f"Webhook subscription {subscription_id} not found")
    return row


async def list_subscriptions(merchant: Merchant, deps: Deps) -> list[SubscriptionRow]:
    async with deps.db.read() as session:
        return await WebhookStore(session).subscriptions(merchant.id)


async def update_subscription(
    merchant: Merchant, subscription_id: str, changes: dict[str, Any], deps: Deps
) -> SubscriptionRow:
    if changes.get("url") is not None:
        await _check_target(changes["url"], deps)
    async with deps.db.transaction() as session:
        row = await WebhookStore(session).subscription(merchant.id, subscription_id)
        if row is None:
            raise NotFound(f"Webhook subscription {subscription_id} not found")
        if changes.get("url") is not None:
            row.url = changes["url"]
        if changes.get("event_types") is not None:
            row.event_types = _check_types(changes["event_types"])
        if changes.get("description") is not None:
            row.description = changes["description"]
        if changes.get("enabled") is True and row.status != "active":
            row.status, row.disabled_reason, row.disabled_at = "active", None, None
            row.failures, row.failing_since = 0, None
        elif changes.get("enabled") is False and row.status == "active":
            row.status, row.disabled_reason, row.disabled_at = (
                "disabled",
                "disabled by the merchant",
                deps.clock.now(),
            )
    deps.webhooks.subscriptions.forget(merchant.id)
    return row


async def delete_subscription(merchant: Merchant, subscription_id: str, deps: Deps) -> None:
    async with deps.db.transaction() as session:
        store = WebhookStore(session)
        row = await store.subscription(merchant.id, subscription_id)
        if row is None:
            raise NotFound(f"Webhook subscription {subscription_id} not found")
        await store.fail_pending(row.id, "subscription deleted")
        await session.delete(row)
    deps.webhooks.subscriptions.forget(merchant.id)


async def deliveries(
    merchant: Merchant, subscription_id: str, limit: int, deps: Deps
) -> list[tuple[DeliveryRow, list[AttemptRow]]]:
    async with deps.db.read() as session:
        store = WebhookStore(session)
        if await store.subscription(merchant.id, subscription_id) is None:
            raise NotFound(f"Webhook subscription {subscription_id} not found")
        return await store.deliveries(subscription_id, limit)


# ---------------------------------------------------------------------------------------------------------
# Sending


class WebhookDispatcher(BackgroundTask):
    name = "webhook-dispatcher"

    def __init__(
        self, db: Database, clock: Clock, settings: NotifierSettings, client: webhooks.WebhookClient
    ) -> None:
        self.db, self.clock, self.settings, self.client = db, clock, settings, client
        self._wake = asyncio.Event()
        self._pool = asyncio.Semaphore(settings.webhook_concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        # Active subscriptions per merchant, read for every delivery event.
        self.subscriptions: TtlCache[str, list[Target]] = TtlCache(10.0)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, give deliveries in flight a moment to finish and be recorded, close the client."""
        await super().stop()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=5)
        await self.client.close()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self.dispatch_due():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook dispatch failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def dispatch_due(self) -> int:
        room = self.settings.webhook_concurrency - len(self._in_flight)
        if room <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        now = self.clock.now()
        lease = now + timedelta(seconds=(self.settings.webhook_timeout_seconds + 30) * self.clock.speed)
        async with self.db.transaction() as session:
            rows = await WebhookStore(session).claim_due(now, lease, room)
            targets = {r.id: await session.get(SubscriptionRow, r.subscription_id) for r in rows}
        for row in rows:
            sub = targets[row.id]
            task = asyncio.create_task(self._attempt(row, sub))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(rows)

    async def _attempt(self, row: DeliveryRow, sub: SubscriptionRow | None) -> None:
        if sub is None or sub.status != "active":
            answer = webhooks.Answer(None, "subscription disabled or deleted", 0.0)
        else:
            async with self._pool:
                answer = await self.client.post(sub.url, sub.secret, row.id, row.body.encode())
            PROVIDER_LATENCY.labels("webhook", "sent" if answer.ok else "failed").observe(answer.seconds)
        for delay in (0.2, 1.0, 5.0, 15.0):
            try:
                await self.record(row.id, answer, final=sub is None or sub.status != "active")
                return
            except Exception as exc:
                log.warning("recording a webhook attempt failed (%s); retrying", exc)
                await asyncio.sleep(delay)

    async def record(self, delivery_id: str, answer: webhooks.Answer, *, final: bool = False) -> None:
        now = self.clock.now()
        outcome = "delivered"
        async with self.db.transaction() as session:
            d = await session.get(DeliveryRow, delivery_id)
            if d is None or d.status != "sending":
                return
            sub = await session.get(SubscriptionRow, d.subscription_id)
            session.add(
                AttemptRow(
                    delivery_id=d.id,
                    attempt=d.attempts,
                    at=now,
                    status_code=answer.status_code,
                    error=answer.error,
                    duration_ms=int(answer.seconds * 1000),
                )
            )
            d.last_status_code, d.last_error, d.lease_until = answer.status_code, answer.error, None
            if answer.ok:
                d.status, d.delivered_at = "delivered", now
                if sub is not None:
                    sub.failures, sub.failing_since = 0, None
                outbox.add(
                    session,
                    ev.WebhookDelivered(
                        order_id=d.order_id,
                        merchant_id=d.merchant_id,
                        subscription_id=d.subscription_id,
                        event_id=d.event_id,
                        status_code=answer.status_code or 0,
                        at=now,
                    ),
                    source=SOURCE,
                )
            else:
                outcome = self._failed(d, sub, now, final)
                if d.status == "failed":
                    outbox.add(
                        session,
                        ev.WebhookFailed(
                            order_id=d.order_id,
                            merchant_id=d.merchant_id,
                            subscription_id=d.subscription_id,
                            event_id=d.event_id,
                            error=d.last_error or "failed",
                            at=now,
                        ),
                        source=SOURCE,
                    )
                if outcome == "disabled" and sub is not None:
                    await WebhookStore(session).fail_pending(
                        sub.id, f"subscription disabled: {sub.disabled_reason}"
                    )
        if outcome == "disabled" and d is not None:
            self.subscriptions.forget(d.merchant_id)
        WEBHOOKS.labels(outcome).inc()

    def _failed(self, d: DeliveryRow, sub: SubscriptionRow | None, now: datetime, final: bool) -> str:
        schedule = self.settings.webhook_schedule_seconds
        if final or d.attempts > len(schedule):
            d.status, outcome = "failed", "failed"
        else:
            delay = schedule[d.attempts - 1] * random.uniform(0.8, 1.2)
            d.status, d.next_attempt_at, outcome = (
                "pending",
                now + timedelta(seconds=delay * self.clock.speed),
                "retried",
            )
        if sub is None or sub.status != "active":
            return outcome
        sub.failures += 1
        sub.failing_since = sub.failing_since or now
        failing_for = now - sub.failing_since
        limit = timedelta(hours=self.settings.webhook_disable_after_hours)
        if failing_for >= limit and sub.failures >= self.settings.webhook_disable_min_failures:
            sub.status, sub.disabled_at = "disabled", now
            sub.disabled_reason = (
                f"every delivery failed for {_span(failing_for)} ({sub.failures} attempts in a row); "
                f"last error: {d.last_error}"
            )
            d.status = "failed"
            return "disabled"
        return outcome


def _span(t: timedelta) -> str:
    hours = t.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{t.total_seconds():.0f} s"
