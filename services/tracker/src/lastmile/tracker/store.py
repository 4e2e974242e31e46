"""Tracker's tables (devices, routes and stops, positions, vehicle state, tracking tokens, proof images) and
queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, defer, mapped_column

from lastmile.common.db import UtcDateTime, driver_connection

OPEN_ROUTE = ("planned", "started")


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
    """The latest version of each vehicle's route, as routes.v1 last said, and the ETA engine's progress."""

    __tablename__ = "routes"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    service_date: Mapped[date] = mapped_column(sa.Date)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))  # planned | started | done | cancelled
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    progress_seq: Mapped[int] = mapped_column(default=0)  # bumped by every write of `progress`
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


@dataclass(frozen=True, slots=True)
class RouteHead:
    """A route's row without its snapshot and progress (see `TrackerStore.route_heads`)."""

    id: str
    vehicle_id: str
    status: str
    version: int
    progress_seq: int


class ProgressUpdate(NamedTuple):
    route_id: str
    progress: str  # JSON
    seq: int
    status: str
    started: datetime | None  # when the route started, if it did now (a start time already set is kept)


# Lock order, for every writer of these tables (else two of them can deadlock, each waiting for a row the other
# holds): the routes first, by id, then the stops, by order id, each set locked before the first change to it.
_ROUTE_HEADS = (
    "SELECT id, vehicle_id, status, version, progress_seq, service_date, start_at FROM routes "
    "WHERE vehicle_id = ANY($1::varchar[]) AND status IN ('planned', 'started') ORDER BY id FOR UPDATE"
)
_LOCK_ROUTES = "SELECT 1 FROM routes WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE"
_LOCK_STOPS = "SELECT 1 FROM stops WHERE order_id = ANY($1::varchar[]) ORDER BY order_id FOR UPDATE"
_SAVE_PROGRESS = (
    "UPDATE routes AS r SET progress = u.progress::json, progress_seq = u.seq, status = u.st, "
    "started_at = coalesce(r.started_at, u.started) "
    "FROM unnest($1::varchar[], $2::text[], $3::int[], $4::varchar[], $5::timestamptz[]) "
    "AS u(id, progress, seq, st, started) WHERE r.id = u.id"
)


_RECORD_ETAS = (  # the rows locked in order first (an UPDATE … FROM locks them in whatever order its join takes)
    "WITH locked AS MATERIALIZED (SELECT order_id FROM stops WHERE order_id = ANY($1::varchar[]) "
    "ORDER BY order_id FOR UPDATE) "
    "UPDATE stops AS s SET eta = u.eta, arriving_at = coalesce(s.arriving_at, u.soon) "
    "FROM unnest($1::varchar[], $2::timestamptz[], $3::timestamptz[]) AS u(order_id, eta, soon) "
    "WHERE s.order_id = u.order_id AND s.status NOT IN ('delivered', 'failed') "
    "AND s.order_id IN (SELECT order_id FROM locked)"
)


def _routes() -> sa.Table:
    return cast(sa.Table, RouteRow.__table__)


class StopRow(Base):
    """One order's stop on the route that carries it, with its lifecycle's times and the driver's result."""

    __tablename__ = "stops"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    route_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    vehicle_id: Mapped[str] = mapped_column(sa.String(40))
    sequence: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))  # planned | out | arrived | delivered | failed
    planned_arrival: Mapped[datetime] = mapped_column(UtcDateTime)
    promised_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    promised_end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    eta: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # as last published
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    out_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    arriving_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    arrived_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    proof: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class ProofImageRow(Base):
    __tablename__ = "proof_images"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20), primary_key=True)  # photo | signature
    content_type: Mapped[str] = mapped_column(sa.String(40))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


positions = sa.Table(
    "positions",
    Base.metadata,
    sa.Column("device_id", sa.String(40), primary_key=True),
    sa.Column("recorded_at", UtcDateTime, primary_key=True),  # same device and time: a duplicate
    sa.Column("vehicle_id", sa.String(40), nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("lon", sa.Float, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("speed_mps", sa.Float),
    sa.Column("heading", sa.Float),
    sa.Column("accuracy_m", sa.Float),
    sa.Column("altitude_m", sa.Float),
    sa.Column("battery", sa.Float),
    sa.Column("suspect", sa.Boolean, nullable=False),
    sa.Index("ix_positions_vehicle_time", "vehicle_id", "recorded_at"),
    sa.Index("ix_positions_received", "received_at", postgresql_using="brin"),
)


POSITION_COLUMNS = (
    "device_id",
    "recorded_at",
    "vehicle_id",
    "lat",
    "lon",
    "received_at",
    "speed_mps",
    "heading",
    "accuracy_m",
    "altitude_m",
    "battery",
    "suspect",
)
_INSERT_POSITIONS = sa.text(
    "INSERT INTO positions (device_id, recorded_at, vehicle_id, lat, lon, received_at, speed_mps, heading, "
    "accuracy_m, altitude_m, battery, suspect) "
    "SELECT * FROM unnest(CAST(:device_id AS varchar[]), CAST(:recorded_at AS timestamptz[]), "
    "CAST(:vehicle_id AS varchar[]), CAST(:lat AS float8[]), CAST(:lon AS float8[]), "
    "CAST(:received_at AS timestamptz[]), CAST(:speed_mps AS float8[]), CAST(:heading AS float8[]), "
    "CAST(:accuracy_m AS float8[]), CAST(:altitude_m AS float8[]), CAST(:battery AS float8[]), "
    "CAST(:suspect AS boolean[])) "
    "ON CONFLICT DO NOTHING RETURNING device_id, recorded_at"
)


class VehicleStateRow(Base):
    """Each vehicle's live position (its latest plausible fix) and what judging its next ping needs."""

    __tablename__ = "vehicle_state"
    vehicle_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(sa.String(40))
    lat: Mapped[float]
    lon: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accuracy_m: Mapped[float | None]
    speed_mps: Mapped[float | None]
    heading: Mapped[float | None]
    battery: Mapped[float | None]
    raw_lat: Mapped[float]  # the latest fix, plausible or not
    raw_lon: Mapped[float]
    raw_at: Mapped[datetime] = mapped_column(UtcDateTime)
    raw_accuracy_m: Mapped[float | None]
    suspect_streak: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class TrackRow(NamedTuple):
    """The part of a vehicle's state that judging its next pings needs."""

    vehicle_id: str
    lat: float
    lon: float
    recorded_at: datetime
    accuracy_m: float | None
    raw_lat: float
    raw_lon: float
    raw_at: datetime
    raw_accuracy_m: float | None
    suspect_streak: int


VEHICLE_STATE_COLUMNS = (
    "vehicle_id",
    "device_id",
    "lat",
    "lon",
    "recorded_at",
    "accuracy_m",
    "speed_mps",
    "heading",
    "battery",
    "raw_lat",
    "raw_lon",
    "raw_at",
    "raw_accuracy_m",
    "suspect_streak",
    "updated_at",
)
RAW_STATE_COLUMNS = ("vehicle_id", "raw_lat", "raw_lon", "raw_at", "raw_accuracy_m", "suspect_streak")
_VEHICLE_TRACKS = (
    f"SELECT {', '.join(TrackRow._fields)} FROM vehicle_state WHERE vehicle_id = ANY($1::varchar[]) "  # noqa: S608
    "ORDER BY vehicle_id FOR UPDATE"
)
_STATE_TYPES = {"vehicle_id": "varchar", "device_id": "varchar", "suspect_streak": "int"}
_STATE_TYPES.update({c: "timestamptz" for c in ("recorded_at", "raw_at", "updated_at")})


def _unnest(columns: Sequence[str]) -> str:
    arrays = ", ".join(f"${i + 1}::{_STATE_TYPES.get(c, 'float8')}[]" for i, c in enumerate(columns))
    return f"unnest({arrays}) AS u({', '.join(columns)})"


_UPSERT_STATES = (
    f"INSERT INTO vehicle_state ({', '.join(VEHICLE_STATE_COLUMNS)}) "  # noqa: S608
    f"SELECT * FROM {_unnest(VEHICLE_STATE_COLUMNS)} ON CONFLICT (vehicle_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in VEHICLE_STATE_COLUMNS[1:])
)
_UPDATE_RAW_STATES = (
    "UPDATE vehicle_state AS v SET "  # noqa: S608
    + ", ".join(f"{c} = u.{c}" for c in RAW_STATE_COLUMNS[1:])
    + f" FROM {_unnest(RAW_STATE_COLUMNS)} WHERE v.vehicle_id = u.vehicle_id"
)


class TrackingRow(Base):
    """What the customer's tracking page shows of the order (the token itself is never stored)."""

    __tablename__ = "tracking"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    version: Mapped[int] = mapped_column(default=1)
    merchant_name: Mapped[str] = mapped_column(sa.String(200), default="")
    reference: Mapped[str] = mapped_column(sa.String(200), default="")
    lat: Mapped[float]
    lon: Mapped[float]
    address: Mapped[list[str]] = mapped_column(sa.JSON)
    windows: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON)
    timezone: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


def insert_ignoring_conflicts(session: AsyncSession, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING on either database."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (
        postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    ).on_conflict_do_nothing()


class TrackerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.postgres = session.bind is not None and session.bind.dialect.name == "postgresql"

    # devices

    async def device_for_key(self, key_hash: str) -> DeviceRow | None:
        query = sa.select(DeviceRow).where(DeviceRow.key_hash == key_hash, DeviceRow.revoked_at.is_(None))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def active_key_hashes(self, key_hashes: set[str]) -> set[str]:
        query = sa.select(DeviceRow.key_hash).where(
            DeviceRow.key_hash.in_(sorted(key_hashes)), DeviceRow.revoked_at.is_(None)
        )
        return set((await self.session.execute(query)).scalars())

    async def device(self, device_id: str) -> DeviceRow | None:
        return await self.session.get(DeviceRow, device_id)

    # routes and stops

    async def route(self, route_id: str, *, lock: bool = False) -> RouteRow | None:
        query = sa.select(RouteRow).where(RouteRow.id == route_id)
        return (await self.session.execute(self._locked(query, lock))).scalar_one_or_none()

    async def route_progress(self, route_id: str | None) -> dict[str, Any] | None:
        """The ETA engine's progress along a route, without its snapshot (a customer's tracking read needs no
        more: the snapshot was most of the JSON each read decoded)."""
        if route_id is None:
            return None
        query = sa.select(RouteRow.progress).where(RouteRow.id == route_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def current_routes(self, vehicle_ids: Sequence[str], *, lock: bool = False) -> dict[str, RouteRow]:
        """Each vehicle's route being driven, else its next planned one."""
        query = (
            sa.select(RouteRow)
            # parsed plans and the engine's progress are cached in the process: see `snapshot`, `progress`
            .options(defer(RouteRow.snapshot, raiseload=True), defer(RouteRow.progress, raiseload=True))
            .where(RouteRow.vehicle_id.in_(sorted(set(vehicle_ids))), RouteRow.status.in_(OPEN_ROUTE))
            .order_by(RouteRow.vehicle_id, RouteRow.service_date, RouteRow.start_at)
        )
        found: dict[str, RouteRow] = {}
        for row in (await self.session.execute(self._locked(query, lock))).scalars():
            current = found.get(row.vehicle_id)
            if current is None or (row.status == "started" and current.status != "started"):
                found[row.vehicle_id] = row
        return found

    async def route_heads(self, vehicle_ids: Sequence[str]) -> dict[str, RouteHead]:
        """`current_routes` (locked) without the ORM: what the ETA engine needs of each vehicle's route, for a
        batch of positions (the plan and the progress are cached in the process). On PostgreSQL straight
        through asyncpg: SQLAlchemy's statement handling cost more than the query."""
        wanted = sorted(set(vehicle_ids))
        if self.postgres:  # locked in id order (see _ROUTE_HEADS), taken in each vehicle's order below
            rows = [tuple(r) for r in await (await self._driver()).fetch(_ROUTE_HEADS, wanted)]
        else:
            table = _routes()
            query = sa.select(
                table.c.id,
                table.c.vehicle_id,
                table.c.status,
                table.c.version,
                table.c.progress_seq,
                table.c.service_date,
                table.c.start_at,
            ).where(table.c.vehicle_id.in_(wanted), table.c.status.in_(OPEN_ROUTE))
            rows = [tuple(r) for r in (await self.session.execute(query)).all()]
        rows.sort(key=lambda r: (r[1], r[5], r[6]))  # vehicle, service date, start
        found: dict[str, RouteHead] = {}
        for row in rows:
            head = RouteHead(*row[:5])
            current = found.get(head.vehicle_id)
            if current is None or (head.status == "started" and current.status != "started"):
                found[head.vehicle_id] = head
        return found

    async def lock_routes(self, route_ids: Sequence[str]) -> None:
        """Lock these routes' rows (those that exist), in id order: see _ROUTE_HEADS. Not on SQLite (one
        writer at a time already)."""
        if self.postgres and route_ids:
            await (await self._driver()).execute(_LOCK_ROUTES, sorted(set(route_ids)))

    async def lock_stops(self, order_ids: Sequence[str]) -> None:
        """Lock these stops' rows (those that exist), in order id order, before the first change to a stop."""
        if self.postgres and order_ids:
            await (await self._driver()).execute(_LOCK_STOPS, sorted(set(order_ids)))

    async def save_progress(self, updates: list[ProgressUpdate]) -> None:
        """Each route's new progress (JSON text), in one statement."""
        if self.postgres:
            columns = list(zip(*updates, strict=True))
            await (await self._driver()).execute(_SAVE_PROGRESS, *columns)
            return
        table = _routes()
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("rid"))
            .values(
                progress=sa.func.json(sa.bindparam("progress")),
                progress_seq=sa.bindparam("seq"),
                status=sa.bindparam("st"),
                started_at=sa.func.coalesce(table.c.started_at, sa.bindparam("started", type_=UtcDateTime)),
            )
        )
        rows = [
            {"rid": u.route_id, "progress": u.progress, "seq": u.seq, "st": u.status, "started": u.started}
            for u in updates
        ]
        await self.session.execute(statement, rows)

    async def _driver(self) -> Any:
        """The asyncpg connection under the session, in its transaction."""
        return await driver_connection(self.session)

    async def snapshot(self, route_id: str) -> dict[str, Any]:
        query = sa.select(RouteRow.snapshot).where(RouteRow.id == route_id)
        snapshot: dict[str, Any] = (await self.session.execute(query)).scalar_one()
        return snapshot

    async def progress(self, route_id: str) -> dict[str, Any] | None:
        query = sa.select(RouteRow.progress).where(RouteRow.id == route_id)
        progress: dict[str, Any] | None = (await self.session.execute(query)).scalar_one()
        return progress

    async def stops(self, route_id: str, *, lock: bool = False) -> list[StopRow]:
        """A route's stops in sequence; locked: in order id order (see _ROUTE_HEADS), rows refreshed."""
        if not lock:
            query = sa.select(StopRow).where(StopRow.route_id == route_id).order_by(StopRow.sequence)
            return list((await self.session.execute(query)).scalars())
        query = sa.select(StopRow).where(StopRow.route_id == route_id).order_by(StopRow.order_id)
        query = self._locked(query, lock).execution_options(populate_existing=True)
        return sorted((await self.session.execute(query)).scalars(), key=lambda s: s.sequence)

    async def locked_stops(self, order_ids: Sequence[str]) -> dict[str, StopRow]:
        """`stops_of`, locked in order id order (see _ROUTE_HEADS), rows refreshed from the database."""
        if not order_ids:
            return {}
        query = (
            sa.select(StopRow).where(StopRow.order_id.in_(sorted(set(order_ids)))).order_by(StopRow.order_id)
        )
        query = self._locked(query, True).execution_options(populate_existing=True)
        return {row.order_id: row for row in (await self.session.execute(query)).scalars()}

    async def stops_of(self, order_ids: Sequence[str]) -> dict[str, StopRow]:
        if not order_ids:
            return {}
        query = sa.select(StopRow).where(StopRow.order_id.in_(sorted(set(order_ids))))
        return {row.order_id: row for row in (await self.session.execute(query)).scalars()}

    async def record_etas(self, etas: list[tuple[str, datetime, datetime | None]]) -> None:
        """(order, ETA published, when it became 'arriving soon' or None), for stops not yet completed."""
        if self.postgres:  # one statement; an order twice: its last ETA, its first 'arriving soon'
            latest: dict[str, tuple[datetime, datetime | None]] = {}
            for order_id, eta, soon in etas:
                before = latest.get(order_id)
                latest[order_id] = (eta, before[1] if before and before[1] else soon)
            columns = [list(latest), [v[0] for v in latest.values()], [v[1] for v in latest.values()]]
            await (await self._driver()).execute(_RECORD_ETAS, *columns)
            return
        table = cast(sa.Table, StopRow.__table__)
        statement = (
            sa.update(table)
            .where(
                table.c.order_id == sa.bindparam("oid"),
                table.c.status != "delivered",
                table.c.status != "failed",
            )
            .values(
                eta=sa.bindparam("new_eta", type_=UtcDateTime),
                arriving_at=sa.func.coalesce(table.c.arriving_at, sa.bindparam("soon", type_=UtcDateTime)),
            )
        )
        await self.session.execute(statement, [{"oid": o, "new_eta": e, "soon": s} for o, e, s in etas])

    async def stop(self, order_id: str) -> StopRow | None:
        return await self.session.get(StopRow, order_id)

    # positions and vehicles

    async def vehicle_tracks(self, vehicle_ids: Sequence[str]) -> dict[str, TrackRow]:
        """What judging pings needs of each vehicle's state (locked, in one order for every writer: no
        deadlocks); on PostgreSQL straight through asyncpg."""
        wanted = sorted(set(vehicle_ids))
        if not wanted:
            return {}
        if self.postgres:
            rows = [TrackRow(*r) for r in await (await self._driver()).fetch(_VEHICLE_TRACKS, wanted)]
        else:
            table = cast(sa.Table, VehicleStateRow.__table__)
            query = (
                sa.select(*(table.c[c] for c in TrackRow._fields))
                .where(table.c.vehicle_id.in_(wanted))
                .order_by(table.c.vehicle_id)
            )
            rows = [TrackRow(*r) for r in (await self.session.execute(query)).all()]
        return {r.vehicle_id: r for r in rows}

    async def save_vehicle_states(self, moved: list[dict[str, Any]], raw: list[dict[str, Any]]) -> None:
        """`moved`: whole rows (VEHICLE_STATE_COLUMNS), inserted or replacing the row; `raw`: only the latest
        fix and the suspect streak (RAW_STATE_COLUMNS) of existing rows."""
        table = cast(sa.Table, VehicleStateRow.__table__)
        if self.postgres:
            driver = await self._driver()
            if moved:
                await driver.execute(_UPSERT_STATES, *([r[c] for r in moved] for c in VEHICLE_STATE_COLUMNS))
            if raw:
                await driver.execute(_UPDATE_RAW_STATES, *([r[c] for r in raw] for c in RAW_STATE_COLUMNS))
            return
        if moved:
            insert = sqlite.insert(table)
            update = {c: insert.excluded[c] for c in VEHICLE_STATE_COLUMNS if c != "vehicle_id"}
            await self.session.execute(
                insert.on_conflict_do_update(index_elements=["vehicle_id"], set_=update), moved
            )
        if raw:
            statement = (
                sa.update(table)
                .where(table.c.vehicle_id == sa.bindparam("vid"))
                .values({c: sa.bindparam(c) for c in RAW_STATE_COLUMNS if c != "vehicle_id"})
            )
            await self.session.execute(statement, [{**r, "vid": r["vehicle_id"]} for r in raw])

    async def vehicle_state(self, vehicle_id: str) -> VehicleStateRow | None:
        return await self.session.get(VehicleStateRow, vehicle_id)

    async def add_positions(self, rows: list[dict[str, Any]]) -> set[tuple[str, datetime]]:
        """Insert; returns (device, time) of those that were new (the others are duplicates)."""
        if not rows:
            return set()
        if self.postgres:  # one statement whatever the count: a column of values per parameter
            columns = {c: [r[c] for r in rows] for c in POSITION_COLUMNS}
            result = await self.session.execute(_INSERT_POSITIONS, columns)
        else:
            statement = insert_ignoring_conflicts(self.session, positions).returning(
                positions.c.device_id, positions.c.recorded_at
            )
            result = await self.session.execute(statement, rows)
        return {(r.device_id, r.recorded_at) for r in result}

    async def track(self, vehicle_id: str, since: datetime, until: datetime, limit: int) -> list[Any]:
        query = (
            sa.select(positions)
            .where(
                positions.c.vehicle_id == vehicle_id,
                positions.c.recorded_at >= since,
                positions.c.recorded_at < until,
            )
            .order_by(positions.c.recorded_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).all())

    async def fleet(self) -> list[VehicleStateRow]:
        query = sa.select(VehicleStateRow).order_by(VehicleStateRow.vehicle_id)
        return list((await self.session.execute(query)).scalars())

    async def changed_since(self, since: datetime, limit: int = 5000) -> list[VehicleStateRow]:
        query = (
            sa.select(VehicleStateRow)
            .where(VehicleStateRow.updated_at > since)
            .order_by(VehicleStateRow.updated_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def active_vehicles(self, since: datetime) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(VehicleStateRow)
            .where(VehicleStateRow.recorded_at >= since)
        )
        return int((await self.session.execute(query)).scalar_one())

    async def routes_started(self) -> int:
        query = sa.select(sa.func.count()).select_from(RouteRow).where(RouteRow.status == "started")
        return int((await self.session.execute(query)).scalar_one())

    async def purge_positions(self, before: datetime, batch: int) -> int:
        """Delete up to `batch` positions received before `before`; returns how many."""
        oldest = (
            sa.select(positions.c.device_id, positions.c.recorded_at)
            .where(positions.c.received_at < before)
            .limit(batch)
        )
        keys = [(r.device_id, r.recorded_at) for r in (await self.session.execute(oldest)).all()]
        if not keys:
            return 0
        key = sa.tuple_(positions.c.device_id, positions.c.recorded_at)
        await self.session.execute(sa.delete(positions).where(key.in_(keys)))
        return len(keys)

    # tracking

    async def tracking(self, token_hash: str) -> TrackingRow | None:
        return await self.session.get(TrackingRow, token_hash)

    async def tracking_of(self, order_id: str) -> TrackingRow | None:
        query = sa.select(TrackingRow).where(TrackingRow.order_id == order_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def proof_image(self, order_id: str, kind: str) -> ProofImageRow | None:
        return await self.session.get(ProofImageRow, (order_id, kind))

    def _locked(self, query: Any, lock: bool) -> Any:
        # SQLite has one writer at a time already; PostgreSQL locks the rows against other replicas' writers.
        return query.with_for_update() if lock and self.postgres else query
