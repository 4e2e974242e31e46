"""Order intake's tables and the queries on them, named in domain words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common import events as ev
from lastmile.common.db import UtcDateTime
from lastmile.order_intake.domain import Depot


class Base(DeclarativeBase):
    pass


class MerchantRow(Base):
    __tablename__ = "merchants"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    keys_version: Mapped[int] = mapped_column(default=0)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    label: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DepotRow(Base):
    __tablename__ = "depots"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    lat: Mapped[float]
    lon: Mapped[float]
    timezone: Mapped[str] = mapped_column(sa.String(64))
    service_radius_km: Mapped[float]
    active: Mapped[bool] = mapped_column(default=True)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (sa.UniqueConstraint("merchant_id", "reference", name="uq_orders_merchant_reference"),)
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    reference: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(30))
    depot_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StatusRow(Base):
    __tablename__ = "order_status_history"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    status: Mapped[str] = mapped_column(sa.String(30))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class IntakeStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # merchants and keys
    async def add_merchant(self, row: MerchantRow) -> None:
        self.session.add(row)
        await (
            self.session.flush()
        )  # its keys reference it; without relationships the flush order is not implied

    async def add_key(self, row: ApiKeyRow) -> None:
        self.session.add(row)

    async def merchant_for_key(self, key_hash: str) -> MerchantRow | None:
        query = (
            sa.select(MerchantRow)
            .join(ApiKeyRow, ApiKeyRow.merchant_id == MerchantRow.id)
            .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def merchant(self, merchant_id: str) -> MerchantRow | None:
        return await self.session.get(MerchantRow, merchant_id)

    async def key(self, key_id: str) -> ApiKeyRow | None:
        return await self.session.get(ApiKeyRow, key_id)

    async def active_key_hashes(self, merchant_id: str) -> list[str]:
        query = sa.select(ApiKeyRow.key_hash).where(
            ApiKeyRow.merchant_id == merchant_id, ApiKeyRow.revoked_at.is_(None)
        )
        return sorted((await self.session.execute(query)).scalars())

    # depots
    async def depots(self) -> list[Depot]:
        rows = (await self.session.execute(sa.select(DepotRow))).scalars()
        return [Depot(r.id, r.name, r.lat, r.lon, r.timezone, r.service_radius_km, r.active) for r in rows]

    async def upsert_depot(self, d: ev.DepotUpserted) -> None:
        row = await self.session.get(DepotRow, d.depot_id) or DepotRow(id=d.depot_id)
        row.name, row.lat, row.lon = d.name, d.location.lat, d.location.lon
        row.timezone, row.service_radius_km, row.active = d.timezone, d.service_radius_km, d.active
        self.session.add(row)

    # orders
    async def add_order(self, order: ev.OrderSnapshot, status: str) -> None:
        self.session.add(
            OrderRow(
                id=order.order_id,
                merchant_id=order.merchant_id,
                reference=order.reference,
                status=status,
                depot_id=order.depot_id,
                version=order.version,
                snapshot=order.model_dump(mode="json"),
                created_at=order.created_at,
                updated_at=order.created_at,
            )
        )
        await self.add_status(order.order_id, status, order.created_at)

    async def order(
        self, order_id: str, merchant_id: str | None = None, *, lock: bool = False
    ) -> OrderRow | None:
        query = sa.select(OrderRow).where(OrderRow.id == order_id)
        if merchant_id is not None:
            query = query.where(OrderRow.merchant_id == merchant_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def order_by_reference(self, merchant_id: str, reference: str) -> OrderRow | None:
        query = sa.select(OrderRow).where(
            OrderRow.merchant_id == merchant_id, OrderRow.reference == reference
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add_status(
        self, order_id: str, status: str, at: datetime, detail: dict[str, Any] | None = None
    ) -> None:
        self.session.add(StatusRow(order_id=order_id, status=status, at=at, detail=detail or {}))

    async def history(self, order_id: str) -> list[StatusRow]:
        query = sa.select(StatusRow).where(StatusRow.order_id == order_id).order_by(StatusRow.id)
        return list((await self.session.execute(query)).scalars())
