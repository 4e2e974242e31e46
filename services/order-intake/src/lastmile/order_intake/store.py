"""Order intake's tables and the queries on them, named in domain words.

The hot path (accepting orders) uses Core statements and one executemany per table per transaction, and
keeps the order as the JSON its event carries (serialised once, by pydantic), not as ORM objects.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common import events as ev
from lastmile.common.db import UtcDateTime, driver_connection, insert_many, insert_records, integrity_errors
from lastmile.common.outbox import STAGED_COLUMNS, outbox_table
from lastmile.order_intake.domain import Depot

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
    service_area: Mapped[list[list[float]] | None] = mapped_column(sa.JSON, nullable=True)
    opens: Mapped[str] = mapped_column(sa.String(5), default="07:00")
    closes: Mapped[str] = mapped_column(sa.String(5), default="21:00")


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "reference", name="uq_orders_merchant_reference"),
        sa.Index("ix_orders_merchant_id_id", "merchant_id", "id"),
    )
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    reference: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(30))
    depot_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int]
    snapshot: Mapped[str] = mapped_column(sa.Text)  # the OrderSnapshot JSON its latest event carried
    extra: Mapped[str] = mapped_column(sa.Text)  # what only the merchant sees: service level, metadata
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StatusRow(Base):
    __tablename__ = "order_status_history"
    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    status: Mapped[str] = mapped_column(sa.String(30))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class IdempotencyRow(Base):
    """A write's response, kept per merchant and key so that a retry gets it again instead of a second effect."""

    __tablename__ = "idempotency_keys"
    merchant_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int]
    response: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


ORDERS = cast(sa.Table, OrderRow.__table__)
ORDER_COLUMNS = (
    "id",
    "merchant_id",
    "reference",
    "status",
    "depot_id",
    "version",
    "snapshot",
    "extra",
    "created_at",
    "updated_at",
)
HISTORY_COLUMNS = ("order_id", "status", "at", "detail")
IDEMPOTENCY_COLUMNS = ("merchant_id", "key", "request_hash", "status_code", "response", "created_at")
HISTORY = cast(sa.Table, StatusRow.__table__)
IDEMPOTENCY = cast(sa.Table, IdempotencyRow.__table__)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond more per order
class NewOrder:
    """One accepted order as rows: its event's data (JSON), what only the merchant sees, and its envelope."""

    order_id: str
    merchant_id: str
    reference: str
    kind: str
    depot_id: str
    created_at: datetime
    tracking_url: str
    snapshot: str
    extra: str
    envelope: ev.SerialisedEnvelope


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: bytes


_LOCK_ORDER = operator.attrgetter("merchant_id", "reference")
_KEY_ORDER = operator.itemgetter(0, 1)  # (merchant id, key) of a response row

# A batch's reference check on PostgreSQL, straight through asyncpg (in the session's transaction) and with an
# array: one parameter whatever the count, where SQLAlchemy renders one per value of an IN list.
REFERENCES_TAKEN = "SELECT reference, id FROM orders WHERE merchant_id = $1 AND reference = ANY($2::text[])"


# The group commit of single orders on PostgreSQL (writer.py): a statement for both of its lookups, and one for
# all of its inserts, straight through asyncpg with one array per column (the same statements whatever the
# group's size, so asyncpg prepares each once per connection). One statement is atomic on its own: no BEGIN and
# COMMIT around it.
CLAIMED = """
SELECT false AS is_order, k.merchant_id, k.key AS name, k.request_hash AS value, k.status_code, k.response
FROM unnest($1::text[], $2::text[]) AS q(merchant_id, name)
JOIN idempotency_keys k ON k.merchant_id = q.merchant_id AND k.key = q.name
UNION ALL
SELECT true, o.merchant_id, o.reference, o.id, NULL, NULL
FROM unnest($3::text[], $4::text[]) AS q(merchant_id, name)
JOIN orders o ON o.merchant_id = q.merchant_id AND o.reference = q.name
"""
ACCEPT = """
WITH new AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
        AS n(id, merchant_id, reference, depot_id, snapshot, extra, created_at)
), orders_ AS (
    INSERT INTO orders (id, merchant_id, reference, status, depot_id, version, snapshot, extra, created_at,
                        updated_at)
    SELECT id, merchant_id, reference, $8, depot_id, 1, snapshot, extra, created_at, created_at FROM new
), history_ AS (
    INSERT INTO order_status_history (order_id, status, at, detail) SELECT id, $8, created_at, '{}' FROM new
), outbox_ AS (
    INSERT INTO outbox (topic, key, event_id, type, payload, created_at)
    SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::timestamptz[])
)
INSERT INTO idempotency_keys (merchant_id, key, request_hash, status_code, response, created_at)
SELECT * FROM unnest($15::text[], $16::text[], $17::text[], $18::int[], $19::bytea[], $20::timestamptz[])
"""
ResponseRow = tuple[str, str, str, int, bytes, datetime]  # IDEMPOTENCY_COLUMNS
OutboxRow = tuple[str, str, str, str, bytes, datetime]  # outbox.STAGED_COLUMNS


class GroupStatements:
    """`IntakeStore.claimed` and `IntakeStore.accept` on PostgreSQL, on an asyncpg connection (in a transaction or
    not: each is one statement)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver  # asyncpg.Connection

    async def claimed(
        self, keys: Sequence[tuple[str, str]], references: Sequence[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], StoredResponse], dict[tuple[str, str], str]]:
        if not keys and not references:
            return {}, {}
        rows = await self.driver.fetch(
            CLAIMED,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [r[0] for r in references],
            [r[1] for r in references],
        )
        stored: dict[tuple[str, str], StoredResponse] = {}
        taken: dict[tuple[str, str], str] = {}
        for is_order, merchant_id, name, value, status_code, response in rows:
            if is_order:
                taken[merchant_id, name] = value
            else:
                stored[merchant_id, name] = StoredResponse(value, status_code, response)
        return stored, taken

    async def accept(
        self,
        orders: Sequence[NewOrder],
        status: str,
        events: Sequence[OutboxRow],
        responses: Sequence[ResponseRow],
    ) -> None:
        """All of it or nothing, even outside a transaction. A reference or a key taken meanwhile raises
        IntegrityError. Rows go in (merchant, reference) and (merchant, key) order, as in `add_orders`."""
        orders = sorted(orders, key=_LOCK_ORDER)
        responses = sorted(responses, key=_KEY_ORDER)
        order_columns = [
            [o.order_id for o in orders],
            [o.merchant_id for o in orders],
            [o.reference for o in orders],
            [o.depot_id for o in orders],
            [o.snapshot for o in orders],
            [o.extra for o in orders],
            [o.created_at for o in orders],
        ]
        event_columns = [list(c) for c in zip(*events, strict=True)] if events else [[]] * 6
        response_columns = [list(c) for c in zip(*responses, strict=True)] if responses else [[]] * 6
        with integrity_errors(ACCEPT):
            await self.driver.execute(ACCEPT, *order_columns, status, *event_columns, *response_columns)


class IntakeStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._postgresql = session.get_bind().dialect.name == "postgresql"

    async def _driver(self) -> Any:
        """The asyncpg connection under the session (in its transaction, if one is open)."""
        return await driver_connection(self.session)

    # merchants and keys
    async def add_merchant(self, row: MerchantRow) -> None:
        self.session.add(row)
        await self.session.flush()  # its keys reference it; without relationships the order is not implied

    async def add_key(self, row: ApiKeyRow) -> None:
        self.session.add(row)

    async def merchant_for_key(self, key_hash: str) -> tuple[str, str] | None:
        query = (
            sa.select(MerchantRow.id, MerchantRow.name)
            .join(ApiKeyRow, ApiKeyRow.merchant_id == MerchantRow.id)
            .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
        )
        row = (await self.session.execute(query)).first()
        return (row.id, row.name) if row else None

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
        return [
            Depot(
                r.id,
                r.name,
                r.lat,
                r.lon,
                r.timezone,
                r.service_radius_km,
                r.active,
                tuple((p[0], p[1]) for p in r.service_area) if r.service_area else None,
                r.opens,
                r.closes,
            )
            for r in rows
        ]

    async def upsert_depot(self, d: ev.DepotUpserted) -> None:
        row = await self.session.get(DepotRow, d.depot_id) or DepotRow(id=d.depot_id)
        row.name, row.lat, row.lon = d.name, d.location.lat, d.location.lon
        row.timezone, row.service_radius_km, row.active = d.timezone, d.service_radius_km, d.active
        row.service_area = [[p.lat, p.lon] for p in d.service_area] if d.service_area else None
        row.opens, row.closes = d.opens, d.closes
        self.session.add(row)

    # orders
    async def add_orders(self, orders: Sequence[NewOrder], status: str) -> None:
        """One multi-row insert per table, however many orders.

        In (merchant, reference) order: writers that race for the same references then lock them in the same
        order, so one waits for the other instead of both deadlocking."""
        orders = sorted(orders, key=_LOCK_ORDER)
        at = [o.created_at for o in orders]  # created_at and updated_at
        rows = [
            (o.order_id, o.merchant_id, o.reference, status, o.depot_id, 1, o.snapshot, o.extra, t, t)
            for o, t in zip(orders, at, strict=True)
        ]
        await insert_records(self.session, ORDERS, ORDER_COLUMNS, rows)
        history = [(o.order_id, status, o.created_at, "{}") for o in orders]
        await insert_records(self.session, HISTORY, HISTORY_COLUMNS, history, raw_json=["detail"])

    async def add_statuses(self, rows: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        history = [(i, s, at, json.dumps(d) if d else "{}") for i, s, at, d in rows]
        await insert_records(self.session, HISTORY, HISTORY_COLUMNS, history, raw_json=["detail"])

    async def order(
        self, order_id: str, merchant_id: str | None = None, *, lock: bool = False
    ) -> OrderRow | None:
        query = sa.select(OrderRow).where(OrderRow.id == order_id)
        if merchant_id is not None:
            query = query.where(OrderRow.merchant_id == merchant_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def references_taken(self, merchant_id: str, references: Sequence[str]) -> dict[str, str]:
        """reference → order id, for those of `references` the merchant already used."""
        if not references:
            return {}
        if self._postgresql:
            rows = await (await self._driver()).fetch(REFERENCES_TAKEN, merchant_id, list(references))
            return {r["reference"]: r["id"] for r in rows}
        query = sa.select(ORDERS.c.reference, ORDERS.c.id).where(
            ORDERS.c.merchant_id == merchant_id, ORDERS.c.reference.in_(references)
        )
        return {r.reference: r.id for r in await self.session.execute(query)}

    async def references_of(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(merchant id, reference) → order id, for those of `pairs` already used."""
        if not pairs:
            return {}
        c = ORDERS.c
        query = sa.select(c.merchant_id, c.reference, c.id).where(
            sa.tuple_(c.merchant_id, c.reference).in_(pairs)
        )
        return {(r.merchant_id, r.reference): r.id for r in await self.session.execute(query)}

    async def claimed(
        self, keys: Sequence[tuple[str, str]], references: Sequence[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], StoredResponse], dict[tuple[str, str], str]]:
        """`stored_responses(keys)` and `references_of(references)`; on PostgreSQL in one statement."""
        if self._postgresql:
            return await GroupStatements(await self._driver()).claimed(keys, references)
        return await self.stored_responses(keys), await self.references_of(references)

    async def accept(
        self,
        orders: Sequence[NewOrder],
        status: str,
        events: Sequence[OutboxRow],
        responses: Sequence[ResponseRow],
    ) -> None:
        """New orders (with their first status), their outbox rows (`outbox.outbox_rows`) and the responses to
        keep under their requests' keys. On PostgreSQL in one statement (see `GroupStatements.accept`)."""
        if self._postgresql:
            await GroupStatements(await self._driver()).accept(orders, status, events, responses)
            return
        await self.add_orders(orders, status)
        await insert_records(self.session, outbox_table, STAGED_COLUMNS, events)
        await self.store_responses(responses)

    async def list_orders(
        self,
        merchant_id: str,
        *,
        status: str | None,
        reference: str | None,
        created_from: datetime | None,
        created_to: datetime | None,
        before_id: str | None,
        limit: int,
    ) -> list[OrderRow]:
        """Newest first; ids are time-ordered, so `before_id` is the cursor."""
        query = sa.select(OrderRow).where(OrderRow.merchant_id == merchant_id)
        if status is not None:
            query = query.where(OrderRow.status == status)
        if reference is not None:
            query = query.where(OrderRow.reference == reference)
        if created_from is not None:
            query = query.where(OrderRow.created_at >= created_from)
        if created_to is not None:
            query = query.where(OrderRow.created_at < created_to)
        if before_id is not None:
            query = query.where(OrderRow.id < before_id)
        query = query.order_by(OrderRow.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def history(self, order_id: str) -> list[StatusRow]:
        query = sa.select(StatusRow).where(StatusRow.order_id == order_id).order_by(StatusRow.id)
        return list((await self.session.execute(query)).scalars())

    # idempotency
    async def stored_response(self, merchant_id: str, key: str) -> StoredResponse | None:
        return (await self.stored_responses([(merchant_id, key)])).get((merchant_id, key))

    async def stored_responses(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredResponse]:
        """(merchant id, key) → the answer stored under it, for those of `keys` that have one."""
        if not keys:
            return {}
        c = IDEMPOTENCY.c
        query = sa.select(c.merchant_id, c.key, c.request_hash, c.status_code, c.response).where(
            sa.tuple_(c.merchant_id, c.key).in_(keys)
        )
        rows = await self.session.execute(query)
        return {
            (r.merchant_id, r.key): StoredResponse(r.request_hash, r.status_code, r.response) for r in rows
        }

    async def store_response(
        self, merchant_id: str, key: str, request_hash: str, status_code: int, body: bytes, at: datetime
    ) -> None:
        await self.store_responses([(merchant_id, key, request_hash, status_code, body, at)])

    async def store_responses(self, rows: Sequence[ResponseRow]) -> None:
        rows = sorted(rows, key=_KEY_ORDER)  # lock order, as in add_orders
        await insert_many(
            self.session, IDEMPOTENCY, [dict(zip(IDEMPOTENCY_COLUMNS, r, strict=True)) for r in rows]
        )

    async def forget_responses(self, before: datetime) -> int:
        result = await self.session.execute(sa.delete(IDEMPOTENCY).where(IDEMPOTENCY.c.created_at < before))
        return int(getattr(result, "rowcount", 0) or 0)


def extra_json(service_level: str | None, metadata: dict[str, Any]) -> str:
    return to_json({"service_level": service_level, "metadata": metadata}).decode()
