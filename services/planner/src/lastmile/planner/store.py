"""Planner's tables (depots, vehicles, jobs, routes) and the queries on them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common.db import UtcDateTime
from lastmile.planner.domain import DepotSpec, JobSpec, VehicleSpec


class Base(DeclarativeBase):
    pass


class DepotRow(Base):
    __tablename__ = "depots"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_spec(self) -> DepotSpec:
        return DepotSpec(**self.spec)


class VehicleRow(Base):
    __tablename__ = "vehicles"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    depot_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_spec(self) -> VehicleSpec:
        spec = dict(self.spec)
        spec["skills"] = tuple(spec.get("skills", ()))
        return VehicleSpec(**spec)


class JobRow(Base):
    """One order to serve. status: pending → planned | unassigned → out → delivered | failed; or cancelled."""

    __tablename__ = "jobs"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    depot_id: Mapped[str] = mapped_column(sa.String(40))
    service_date: Mapped[date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(20))
    version: Mapped[int]
    order: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    vehicle_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    route_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    planned_arrival: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    promised_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    promised_end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)
    __table_args__ = (sa.Index("ix_jobs_depot_day", "depot_id", "service_date"),)

    def to_spec(self) -> JobSpec:
        from lastmile.common.events import OrderCreated

        return JobSpec.from_order(OrderCreated.model_validate(self.order))


class RouteRow(Base):
    __tablename__ = "routes"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40))
    depot_id: Mapped[str] = mapped_column(sa.String(40))
    service_date: Mapped[date] = mapped_column(sa.Date)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))  # planned | started | cancelled
    plan_id: Mapped[str] = mapped_column(sa.String(40))
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    __table_args__ = (sa.UniqueConstraint("vehicle_id", "service_date", name="uq_routes_vehicle_day"),)


class PlannerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def depot(self, depot_id: str) -> DepotRow | None:
        return await self.session.get(DepotRow, depot_id)

    async def depots(self) -> list[DepotRow]:
        return list((await self.session.execute(sa.select(DepotRow).order_by(DepotRow.id))).scalars())

    async def vehicles(self, depot_id: str | None = None) -> list[VehicleRow]:
        query = sa.select(VehicleRow).where(VehicleRow.active.is_(True)).order_by(VehicleRow.id)
        if depot_id is not None:
            query = query.where(VehicleRow.depot_id == depot_id)
        return list((await self.session.execute(query)).scalars())

    async def job(self, order_id: str) -> JobRow | None:
        return await self.session.get(JobRow, order_id)

    async def jobs(self, depot_id: str, day: date, statuses: tuple[str, ...]) -> list[JobRow]:
        query = (
            sa.select(JobRow)
            .where(JobRow.depot_id == depot_id, JobRow.service_date == day, JobRow.status.in_(statuses))
            .order_by(JobRow.order_id)
        )
        return list((await self.session.execute(query)).scalars())

    async def routes(self, depot_id: str | None = None, day: date | None = None) -> list[RouteRow]:
        query = sa.select(RouteRow).order_by(RouteRow.vehicle_id)
        if depot_id is not None:
            query = query.where(RouteRow.depot_id == depot_id)
        if day is not None:
            query = query.where(RouteRow.service_date == day)
        return list((await self.session.execute(query)).scalars())

    async def route_for(self, vehicle_id: str, day: date) -> RouteRow | None:
        query = sa.select(RouteRow).where(RouteRow.vehicle_id == vehicle_id, RouteRow.service_date == day)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def route(self, route_id: str) -> RouteRow | None:
        return await self.session.get(RouteRow, route_id)
