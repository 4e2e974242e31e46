"""Webhook tables (subscriptions, deliveries, attempts) and their queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from lastmile.common.db import UtcDateTime
from lastmile.notifier.store import Base, dialect_insert


class SubscriptionRow(Base):
    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    event_types: Mapped[list[str]] = mapped_column(sa.JSON)
    secret: Mapped[str] = mapped_column(sa.String(100))  # needed in clear to sign; shown to the merchant once
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    status: Mapped[str] = mapped_column(sa.String(20), default="active")  # active | disabled
    disabled_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failures: Mapped[int] = mapped_column(default=0)  # failed attempts since the last success
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeliveryRow(Base):
    """One event for one subscription: its id is the `webhook-id`, the same on every attempt."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    order_id: Mapped[str] = mapped_column(sa.String(40))
    event_id: Mapped[str] = mapped_column(sa.String(36))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20))  # pending | sending | delivered | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )


class AttemptRow(Base):
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    attempt: Mapped[int]
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    duration_ms: Mapped[int]


class WebhookStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def subscription(self, merchant_id: str, subscription_id: str) -> SubscriptionRow | None:
        row = await self.session.get(SubscriptionRow, subscription_id)
        return row if row is not None and row.merchant_id == merchant_id else None

    async def subscriptions(self, merchant_id: str, *, active_only: bool = False) -> list[SubscriptionRow]:
        query = sa.select(SubscriptionRow).where(SubscriptionRow.merchant_id == merchant_id)
        if active_only:
            query = query.where(SubscriptionRow.status == "active")
        return list((await self.session.execute(query.order_by(SubscriptionRow.created_at))).scalars())

    async def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            stmt = dialect_insert(self.session, DeliveryRow.__table__).on_conflict_do_nothing(
                index_elements=["subscription_id", "event_id"]
            )
            await self.session.execute(stmt, list(rows))

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DeliveryRow]:
        due = sa.or_(
            sa.and_(DeliveryRow.status == "pending", DeliveryRow.next_attempt_at <= now),
            sa.and_(DeliveryRow.status == "sending", DeliveryRow.lease_until < now),
        )
        query = sa.select(DeliveryRow).where(due).order_by(DeliveryRow.next_attempt_at).limit(limit)
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list((await self.session.execute(query)).scalars())
        for row in rows:
            row.status, row.lease_until, row.attempts = "sending", lease_until, row.attempts + 1
        await self.session.flush()
        return rows

    async def fail_pending(self, subscription_id: str, reason: str) -> None:
        await self.session.execute(
            sa.update(DeliveryRow)
            .where(DeliveryRow.subscription_id == subscription_id, DeliveryRow.status == "pending")
            .values(status="failed", last_error=reason)
        )

    async def deliveries(
        self, subscription_id: str, limit: int
    ) -> list[tuple[DeliveryRow, list[AttemptRow]]]:
        query = (
            sa.select(DeliveryRow)
            .where(DeliveryRow.subscription_id == subscription_id)
            .order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
            .limit(limit)
        )
        rows = list((await self.session.execute(query)).scalars())
        attempts: dict[str, list[AttemptRow]] = {r.id: [] for r in rows}
        if rows:
            found = await self.session.execute(
                sa.select(AttemptRow).where(AttemptRow.delivery_id.in_(attempts)).order_by(AttemptRow.id)
            )
            for a in found.scalars():
                attempts[a.delivery_id].append(a)
        return [(r, attempts[r.id]) for r in rows]
