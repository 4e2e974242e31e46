"""Notifier's tables (contacts, the notification log) and queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common.db import UtcDateTime


class Base(DeclarativeBase):
    pass


class ContactRow(Base):
    __tablename__ = "contacts"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    merchant_name: Mapped[str] = mapped_column(sa.String(200))
    recipient: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    tracking_url: Mapped[str] = mapped_column(sa.String(500))
    version: Mapped[int]


class NotificationRow(Base):
    """Recorded before the provider is called (pending) and after (sent | failed): the exactly-once log."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    channel: Mapped[str] = mapped_column(sa.String(20))
    dedupe: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    to: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    body: Mapped[str] = mapped_column(sa.Text)
    provider_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (sa.UniqueConstraint("order_id", "channel", "dedupe", name="uq_notifications_identity"),)


class DeferredRow(Base):
    """A delivery event that came before its order (topics are not ordered with each other)."""

    __tablename__ = "deferred_events"
    event_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NotifierStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def contact(self, order_id: str) -> ContactRow | None:
        return await self.session.get(ContactRow, order_id)

    async def exists(self, order_id: str, channel: str, dedupe: str) -> bool:
        query = sa.select(NotificationRow.id).where(
            NotificationRow.order_id == order_id,
            NotificationRow.channel == channel,
            NotificationRow.dedupe == dedupe,
        )
        return (await self.session.execute(query)).first() is not None

    async def defer(self, order_id: str, envelope: dict[str, Any], at: datetime) -> None:
        self.session.add(
            DeferredRow(event_id=envelope["id"], order_id=order_id, envelope=envelope, received_at=at)
        )

    async def take_deferred(self, order_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(DeferredRow).where(DeferredRow.order_id == order_id).order_by(DeferredRow.received_at)
        )
        rows = list((await self.session.execute(query)).scalars())
        for row in rows:
            await self.session.delete(row)
        return [r.envelope for r in rows]

    async def pending(self, limit: int) -> list[NotificationRow]:
        query = (
            sa.select(NotificationRow)
            .where(NotificationRow.status == "pending")
            .order_by(NotificationRow.created_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def for_order(self, order_id: str) -> list[NotificationRow]:
        query = (
            sa.select(NotificationRow)
            .where(NotificationRow.order_id == order_id)
            .order_by(NotificationRow.created_at)
        )
        return list((await self.session.execute(query)).scalars())
