"""Tracker's tables (devices, routes and stops, positions, vehicle state, tracking tokens) and queries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common.db import UtcDateTime

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class DeviceRow(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RouteRow(Base):
    """The latest version of each vehicle's route, as routes.v1 last said."""

    __tablename__ = "routes"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    service_date: Mapped[date] = mapped_column(sa.Date)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))  # planned | started | done | cancelled
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StopRow(Base):
    __tablename__ = "stops"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    route_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40))
    sequence: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))  # planned | out | arrived | delivered | failed
    planned_arrival: Mapped[datetime] = mapped_column(UtcDateTime)
    eta: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    proof: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class PositionRow(Base):
    __tablename__ = "positions"
    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40))
    device_id: Mapped[str] = mapped_column(sa.String(40))
    lat: Mapped[float]
    lon: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    speed_mps: Mapped[float | None]
    accuracy_m: Mapped[float | None]
    suspect: Mapped[bool] = mapped_column(default=False)
    __table_args__ = (sa.UniqueConstraint("device_id", "recorded_at", name="uq_positions_device_time"),)


class VehicleStateRow(Base):
    __tablename__ = "vehicle_state"
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    lat: Mapped[float]
    lon: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TrackingRow(Base):
    __tablename__ = "tracking"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), unique=True)


class TrackerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def device_for_key(self, key_hash: str) -> DeviceRow | None:
        query = sa.select(DeviceRow).where(DeviceRow.key_hash == key_hash, DeviceRow.revoked_at.is_(None))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def device(self, device_id: str) -> DeviceRow | None:
        return await self.session.get(DeviceRow, device_id)

    async def route(self, route_id: str) -> RouteRow | None:
        return await self.session.get(RouteRow, route_id)

    async def current_route(self, vehicle_id: str) -> RouteRow | None:
        query = (
            sa.select(RouteRow)
            .where(RouteRow.vehicle_id == vehicle_id, RouteRow.status.in_(("planned", "started")))
            .order_by(RouteRow.service_date)
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def stops(self, route_id: str) -> list[StopRow]:
        query = sa.select(StopRow).where(StopRow.route_id == route_id).order_by(StopRow.sequence)
        return list((await self.session.execute(query)).scalars())

    async def stop(self, order_id: str) -> StopRow | None:
        return await self.session.get(StopRow, order_id)

    async def vehicle_state(self, vehicle_id: str) -> VehicleStateRow | None:
        return await self.session.get(VehicleStateRow, vehicle_id)
