"""Planner's tables (fleet, devices, positions, jobs, routes, plans) and the queries on them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common.db import UtcDateTime
from lastmile.common.events import OrderCreated
from lastmile.planner.domain import DepotSpec, JobSpec, VehicleSpec


class Base(DeclarativeBase):
    pass


_Row = TypeVar("_Row", bound=Base)


class DepotRow(Base):
    __tablename__ = "depots"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_spec(self) -> DepotSpec:
        return DepotSpec.from_dict(self.spec)


class VehicleRow(Base):
    __tablename__ = "vehicles"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    depot_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_spec(self) -> VehicleSpec:
        return VehicleSpec.from_dict(self.spec)


class DriverRow(Base):
    __tablename__ = "drivers"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    vehicle_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeviceRow(Base):
    """A copy of the tracker's devices (devices.v1): the key hash authenticates a driver's app."""

    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40))
    key_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    active: Mapped[bool]
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class PositionRow(Base):
    """The latest position of each vehicle (locations.v1): where a re-plan starts it from."""

    __tablename__ = "positions"
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    lat: Mapped[float]
    lon: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


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
    lateness_s: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (sa.Index("ix_jobs_depot_day", "depot_id", "service_date"),)

    def to_spec(self) -> JobSpec:
        return JobSpec.from_order(OrderCreated.model_validate(self.order))

    @property
    def promised(self) -> tuple[datetime, datetime] | None:
        if self.promised_start is None or self.promised_end is None:
            return None
        return (self.promised_start, self.promised_end)


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

    def order_ids(self) -> list[str]:
        return [s["order_id"] for s in self.snapshot.get("stops", [])]


class PlanRow(Base):
    """One planning run of a depot-day: a wave, an on-demand plan or a re-plan, with its outcome and KPIs."""

    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    depot_id: Mapped[str] = mapped_column(sa.String(40))
    service_date: Mapped[date] = mapped_column(sa.Date)
    kind: Mapped[str] = mapped_column(sa.String(20))  # wave | on_demand | replan
    status: Mapped[str] = mapped_column(sa.String(20))  # queued | running | done | failed
    wave: Mapped[str | None] = mapped_column(sa.String(5), nullable=True)  # the cutoff that started it
    triggers: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # why: {"order_created": 3, "delay": 1}
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # engine, seconds, KPIs, stops moved
    error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    __table_args__ = (sa.Index("ix_plans_depot_day", "depot_id", "service_date"),)

    @classmethod
    def queued(
        cls,
        plan_id: str,
        depot_id: str,
        day: date,
        kind: str,
        triggers: dict[str, Any],
        now: datetime,
        wave: str | None = None,
    ) -> PlanRow:
        return cls(
            id=plan_id,
            depot_id=depot_id,
            service_date=day,
            kind=kind,
            status="queued",
            wave=wave,
            triggers=triggers,
            requested_at=now,
            result={},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "depot_id": self.depot_id,
            "date": self.service_date.isoformat(),
            "kind": self.kind,
            "status": self.status,
            "wave": self.wave,
            "triggers": self.triggers,
            "requested_at": self.requested_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            **self.result,
        }


class PlannerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def depot(self, depot_id: str) -> DepotRow | None:
        return await self.session.get(DepotRow, depot_id)

    async def depots(self) -> list[DepotRow]:
        return list((await self.session.execute(sa.select(DepotRow).order_by(DepotRow.id))).scalars())

    async def vehicle(self, vehicle_id: str) -> VehicleRow | None:
        return await self.session.get(VehicleRow, vehicle_id)

    async def vehicles(self, depot_id: str | None = None) -> list[VehicleRow]:
        query = sa.select(VehicleRow).where(VehicleRow.active.is_(True)).order_by(VehicleRow.id)
        if depot_id is not None:
            query = query.where(VehicleRow.depot_id == depot_id)
        return list((await self.session.execute(query)).scalars())

    async def drivers(self) -> list[DriverRow]:
        return list((await self.session.execute(sa.select(DriverRow).order_by(DriverRow.id))).scalars())

    async def device_by_key(self, key_hash: str) -> DeviceRow | None:
        query = sa.select(DeviceRow).where(DeviceRow.key_hash == key_hash, DeviceRow.active.is_(True))
        return (await self.session.execute(query)).scalars().first()

    async def positions(self, vehicle_ids: list[str]) -> dict[str, PositionRow]:
        query = sa.select(PositionRow).where(PositionRow.vehicle_id.in_(vehicle_ids))
        return {p.vehicle_id: p for p in (await self.session.execute(query)).scalars()}

    async def job(self, order_id: str) -> JobRow | None:
        return await self.session.get(JobRow, order_id)

    async def closed_jobs(self, order_ids: Iterable[str]) -> dict[str, str]:
        """Order → status, for those of `order_ids` done (delivered, failed) or cancelled."""
        query = sa.select(JobRow.order_id, JobRow.status).where(
            JobRow.order_id.in_(sorted(set(order_ids))),
            JobRow.status.in_(("delivered", "failed", "cancelled")),
        )
        return {order_id: status for order_id, status in (await self.session.execute(query)).all()}

    async def jobs(
        self, depot_id: str, day: date, statuses: tuple[str, ...] | None = None, *, lock: bool = False
    ) -> list[JobRow]:
        query = sa.select(JobRow).where(JobRow.depot_id == depot_id, JobRow.service_date == day)
        if statuses is not None:
            query = query.where(JobRow.status.in_(statuses))
        query = query.order_by(JobRow.order_id)
        return list((await self.session.execute(query.with_for_update() if lock else query)).scalars())

    async def lock_routes(self, route_ids: Iterable[str]) -> list[RouteRow]:
        """Lock these routes' rows now, in primary-key order (and load them): after the jobs, as every writer
        takes them (two batches of delivery events starting routes in different orders deadlocked too)."""
        return await self._locked(RouteRow, RouteRow.id, route_ids)

    async def lock_jobs(self, order_ids: Iterable[str]) -> list[JobRow]:
        """Lock these jobs' rows now, in primary-key order (and load them).

        Every transaction that changes jobs takes their locks in this order before its first change, and
        before any route's: a plan being saved and a batch of delivery events changing the same jobs in
        different orders deadlocked on PostgreSQL (each deadlock cost a second and a retry). SQLite has one
        writer and no row locks."""
        return await self._locked(JobRow, JobRow.order_id, order_ids)

    async def _locked(self, row: type[_Row], key: Any, ids: Iterable[str]) -> list[_Row]:
        """The rows whose primary key `key` is among `ids`, locked in key order (SQLite ignores the lock)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        query = sa.select(row).where(key.in_(wanted)).order_by(key).with_for_update()
        return list((await self.session.execute(query)).scalars())

    async def pending_days(self, depot_id: str) -> list[date]:
        query = (
            sa.select(JobRow.service_date)
            .where(JobRow.depot_id == depot_id, JobRow.status == "pending")
            .distinct()
        )
        return [d for (d,) in await self.session.execute(query)]

    async def routes(
        self, depot_id: str | None = None, day: date | None = None, *, lock: bool = False
    ) -> list[RouteRow]:
        """By vehicle; locked: in primary-key order (see `lock_routes`)."""
        query = sa.select(RouteRow).order_by(RouteRow.id if lock else RouteRow.vehicle_id)
        if depot_id is not None:
            query = query.where(RouteRow.depot_id == depot_id)
        if day is not None:
            query = query.where(RouteRow.service_date == day)
        return list((await self.session.execute(query.with_for_update() if lock else query)).scalars())

    async def route_for(self, vehicle_id: str, day: date) -> RouteRow | None:
        query = sa.select(RouteRow).where(RouteRow.vehicle_id == vehicle_id, RouteRow.service_date == day)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def route(self, route_id: str) -> RouteRow | None:
        return await self.session.get(RouteRow, route_id)

    async def plan(self, plan_id: str) -> PlanRow | None:
        return await self.session.get(PlanRow, plan_id)

    async def plans(self, depot_id: str | None, day: date | None, limit: int = 100) -> list[PlanRow]:
        query = sa.select(PlanRow).order_by(PlanRow.id.desc()).limit(limit)
        if depot_id is not None:
            query = query.where(PlanRow.depot_id == depot_id)
        if day is not None:
            query = query.where(PlanRow.service_date == day)
        return list((await self.session.execute(query)).scalars())

    async def unfinished_plans(self) -> list[PlanRow]:
        query = sa.select(PlanRow).where(PlanRow.status.in_(("queued", "running"))).order_by(PlanRow.id)
        return list((await self.session.execute(query)).scalars())

    async def wave_ran(self, depot_id: str, day: date, cutoff: str | None = None) -> bool:
        query = sa.select(PlanRow.id).where(
            PlanRow.depot_id == depot_id, PlanRow.service_date == day, PlanRow.kind == "wave"
        )
        if cutoff is not None:
            query = query.where(PlanRow.wave == cutoff)
        return (await self.session.execute(query.limit(1))).first() is not None
