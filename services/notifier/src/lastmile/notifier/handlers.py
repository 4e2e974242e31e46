"""Notifier's use cases: contacts from orders.v1, messages from deliveries.v1, and the sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.ids import new_id
from lastmile.notifier import domain
from lastmile.notifier.channels import Channel
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.store import ContactRow, NotificationRow, NotifierStore

log = logging.getLogger(__name__)
SOURCE = "notifier"

MESSAGES = Counter(
    "lastmile_notifier_messages_total",
    "Customer messages by channel, kind and outcome",
    ["channel", "kind", "outcome"],
)


@dataclass
class Deps:
    db: Database
    clock: Clock
    settings: NotifierSettings
    channels: dict[str, Channel]
    sender: Sender = field(init=False)


async def on_order(session: AsyncSession, envelope: ev.Envelope, event: ev.OrderSnapshot, deps: Deps) -> None:
    """Keep the recipient's contact and preferences (the newest version wins)."""
    row = await NotifierStore(session).contact(event.order_id)
    if row is not None and row.version >= event.version:
        return
    if row is None:
        row = ContactRow(order_id=event.order_id)
        session.add(row)
    row.merchant_id, row.merchant_name, row.version = event.merchant_id, event.merchant_name, event.version
    row.recipient, row.tracking_url = event.recipient.model_dump(mode="json"), event.tracking_url
    await session.flush()
    for raw in await NotifierStore(session).take_deferred(event.order_id):
        deferred = ev.Envelope.model_validate(raw)
        await on_delivery_event(session, deferred, deferred.payload(), deps)


async def on_delivery_event(session: AsyncSession, envelope: ev.Envelope, event: Any, deps: Deps) -> None:
    """Record the messages the policy asks for; the sender delivers them after commit."""
    store = NotifierStore(session)
    row = await store.contact(event.order_id)
    if row is None:  # the order's own event has not arrived yet: keep this one until it does
        await store.defer(event.order_id, envelope.model_dump(mode="json"), deps.clock.now())
        return
    contact = domain.Contact(
        row.order_id, row.merchant_name, ev.Recipient.model_validate(row.recipient), row.tracking_url
    )
    added = False
    for message in domain.notifications_for(event, contact):
        if await store.exists(message.order_id, message.channel, message.dedupe):
            continue
        session.add(
            NotificationRow(
                id=new_id("ntf"),
                order_id=message.order_id,
                kind=message.kind,
                channel=message.channel,
                dedupe=message.dedupe,
                status="pending",
                to=message.to,
                subject=message.subject,
                body=message.body,
                created_at=deps.clock.now(),
            )
        )
        added = True
    if added:
        Database.after_commit(session, deps.sender.wake)


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.OrderCreated: on_order,
    ev.OrderUpdated: on_order,
    ev.DeliveryScheduled: on_delivery_event,
    ev.OutForDelivery: on_delivery_event,
    ev.Delivered: on_delivery_event,
    ev.DeliveryFailed: on_delivery_event,
}


class Sender:
    """Sends pending messages; each is recorded pending before the provider call and sent after it."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sender")
        self.wake()  # messages left pending by a crash go out now

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self.send_pending():
                    pass
            except Exception:
                log.exception("sending failed; retrying")
                await asyncio.sleep(1.0)

    async def send_pending(self) -> int:
        async with self.deps.db.read() as session:
            batch = await NotifierStore(session).pending(self.deps.settings.send_batch)
        for message in batch:
            await self._send(message)
        return len(batch)

    async def _send(self, message: NotificationRow) -> None:
        channel = self.deps.channels[self.deps.settings.channel]
        provider_id = await channel.send(message)
        now = self.deps.clock.now()
        async with self.deps.db.transaction() as session:
            row = await session.get(NotificationRow, message.id)
            if row is None or row.status != "pending":
                return
            row.status, row.provider_id, row.sent_at = "sent", provider_id, now
            event = ev.NotificationSent(
                notification_id=row.id,
                order_id=row.order_id,
                channel=row.channel,
                kind=row.kind,
                provider_id=provider_id,
                at=now,
            )
            outbox.add(session, event, source=SOURCE)
        MESSAGES.labels(message.channel, message.kind, "sent").inc()
