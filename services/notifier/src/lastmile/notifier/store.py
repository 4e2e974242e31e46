"""Notifier's tables (contacts and order state, the notification log, opt-outs, templates, merchants' key
hashes) and their queries. Webhook tables are in `store_webhooks.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lastmile.common.db import UtcDateTime, driver_connection


class Base(DeclarativeBase):
    pass


class ContactRow(Base):
    """An order's recipient (from orders.v1) and what the customer was told so far (from deliveries.v1)."""

    __tablename__ = "contacts"
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    merchant_name: Mapped[str] = mapped_column(sa.String(200))
    recipient: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    tracking_url: Mapped[str] = mapped_column(sa.String(500))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20), default="received")
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_eta: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    eta_messages: Mapped[int] = mapped_column(default=0)


class NotificationRow(Base):
    """The exactly-once log: one row per (order, channel, identity), recorded before the provider is called
    (pending, then sending) and after (sent | failed); dropped and suppressed rows say why nothing went."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(40))
    channel: Mapped[str] = mapped_column(sa.String(20))
    dedupe: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20))
    to: Mapped[str] = mapped_column(sa.String(320))
    to_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    language: Mapped[str] = mapped_column(sa.String(10), default="en")
    subject: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    body: Mapped[str] = mapped_column(sa.Text)
    html: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    provider_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    delivery_status: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    ambiguous: Mapped[int] = mapped_column(default=0)  # attempts whose outcome is unknown (crash, timeout)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    __table_args__ = (
        sa.UniqueConstraint("order_id", "channel", "dedupe", name="uq_notifications_identity"),
        sa.Index("ix_notifications_due", "status", "next_attempt_at"),
        # an order's messages by kind and state (superseding): SQLite, which keeps no statistics, otherwise
        # walked every pending message of the day through the index above for each event
        sa.Index("ix_notifications_order", "order_id", "kind", "status"),
    )


class OptOutRow(Base):
    __tablename__ = "opt_outs"
    channel: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    address_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(40))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeferredRow(Base):
    """A delivery event that came before its order (topics are not ordered with each other)."""

    __tablename__ = "deferred_events"
    event_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TemplateRow(Base):
    """A merchant's own wording for one kind of message in one language."""

    __tablename__ = "templates"
    merchant_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    language: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    sms: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    subject: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    text: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MerchantRow(Base):
    """A copy of merchants.v1: the merchant's name and the version of its key set."""

    __tablename__ = "merchants"
    merchant_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    keys_version: Mapped[int]


class MerchantKeyRow(Base):
    __tablename__ = "merchant_keys"
    key_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)


OPEN = ("pending", "sending")
NOTIFICATIONS = cast(sa.Table, NotificationRow.__table__)


def is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY($1)`, one array parameter, so the statement's text does
    not change with the number of values and is prepared once (IN renders a parameter per value)."""
    if is_postgres(session):
        return column == sa.any_(sa.literal(list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


# The log's columns a new message sets, with their PostgreSQL types (for the unnest insert below).
_RECORD_TYPES = {
    "id": "varchar",
    "order_id": "varchar",
    "kind": "varchar",
    "channel": "varchar",
    "dedupe": "varchar",
    "status": "varchar",
    "error": "text",
    "to": "varchar",
    "to_hash": "varchar",
    "language": "varchar",
    "subject": "varchar",
    "body": "text",
    "html": "text",
    "attempts": "integer",
    "ambiguous": "integer",
    "next_attempt_at": "timestamptz",
    "lease_until": "timestamptz",
    "created_at": "timestamptz",
}


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """INSERT with ON CONFLICT support on either database."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


_LOCK_ORDERS = sa.text(
    "SELECT count(pg_advisory_xact_lock(7230010, hashtext(k))) FROM unnest(CAST(:keys AS VARCHAR[])) AS k"
)


class NotifierStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def contact(self, order_id: str) -> ContactRow | None:
        return await self.session.get(ContactRow, order_id)

    async def contacts(self, order_ids: Sequence[str]) -> list[ContactRow]:
        query = sa.select(ContactRow).where(one_of(self.session, ContactRow.order_id, order_ids))
        return list((await self.session.execute(query)).scalars())

    async def record(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert messages; an identity already in the log is left alone. Returns the ids of the new ones."""
        if not rows:
            return set()
        if is_postgres(self.session):
            return await self._record_pg(rows)
        table = NOTIFICATIONS
        stmt = dialect_insert(self.session, table).on_conflict_do_nothing(
            index_elements=["order_id", "channel", "dedupe"]
        )
        result = await self.session.execute(stmt.returning(table.c.id), list(rows))
        return {r.id for r in result.all()}

    async def _record_pg(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """One INSERT … SELECT FROM unnest(one array per column): the same text for any number of rows (a
        multi-row VALUES is a new statement to compile, parse and plan for each size), and no per-value work in
        SQLAlchemy. Straight to asyncpg, inside the session's transaction."""
        columns = list(rows[0])
        arrays = [[r[c] for r in rows] for c in columns]
        names = ", ".join(f'"{c}"' for c in columns)
        unnest = ", ".join(f"${i + 1}::{_RECORD_TYPES[c]}[]" for i, c in enumerate(columns))
        statement = (
            f"INSERT INTO notifications ({names}) SELECT * FROM unnest({unnest}) "  # noqa: S608 (column names are ours)
            "ON CONFLICT (order_id, channel, dedupe) DO NOTHING RETURNING id"
        )
        driver = await driver_connection(self.session)
        return {r["id"] for r in await driver.fetch(statement, *arrays)}

    async def supersede(self, order_ids: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, str]]:
        """Unsent messages of these kinds no longer matter: mark them dropped; returns (channel, kind)."""
        table = NOTIFICATIONS
        stmt = (
            sa.update(table)
            .where(
                one_of(self.session, table.c.order_id, order_ids),
                one_of(self.session, table.c.kind, kinds),
                table.c.status == "pending",
            )
            .values(status="dropped", error="superseded by a later event", lease_until=None)
            .returning(table.c.channel, table.c.kind)
        )
        return [(r.channel, r.kind) for r in (await self.session.execute(stmt)).all()]

    async def opted_out(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (channel, address hash) pairs have opted out."""
        if not pairs:
            return set()
        hashes = {h for _, h in pairs}
        query = sa.select(OptOutRow.channel, OptOutRow.address_hash).where(
            one_of(self.session, OptOutRow.address_hash, sorted(hashes))
        )
        found = {(r.channel, r.address_hash) for r in (await self.session.execute(query)).all()}
        return found & set(pairs)

    async def opt_out(self, channel: str, hashed: str, source: str, at: datetime) -> bool:
        """Record an opt-out and suppress the address's unsent messages; False if it was already there."""
        stmt = dialect_insert(self.session, OptOutRow.__table__).on_conflict_do_nothing()
        values = {"channel": channel, "address_hash": hashed, "source": source, "at": at}
        new = getattr(await self.session.execute(stmt.values(values)), "rowcount", 0) == 1
        table = NOTIFICATIONS
        await self.session.execute(
            sa.update(table)
            .where(table.c.channel == channel, table.c.to_hash == hashed, table.c.status == "pending")
            .values(status="suppressed", error="recipient opted out")
        )
        return new

    async def opt_in(self, channel: str, hashed: str) -> None:
        await self.session.execute(
            sa.delete(OptOutRow).where(OptOutRow.channel == channel, OptOutRow.address_hash == hashed)
        )

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        """On PostgreSQL, a lock per order until the transaction ends (taken in sorted order): an order's event
        and a delivery event that came before it wait for each other, so the delivery event is either deferred
        before the order's transaction looks for deferred events, or finds the order's contact. SQLite runs
        one writer at a time already. Two-key advisory locks: their keys never meet the one-key locks (the
        outbox relay's, migrations')."""
        if not order_ids or not is_postgres(self.session):
            return
        await self.session.execute(_LOCK_ORDERS, {"keys": sorted(set(order_ids))})

    async def defer(self, order_id: str, envelope: dict[str, Any], at: datetime) -> None:
        stmt = dialect_insert(self.session, DeferredRow.__table__).on_conflict_do_nothing()
        values = {"event_id": envelope["id"], "order_id": order_id, "envelope": envelope, "received_at": at}
        await self.session.execute(stmt.values(values))

    async def take_deferred(self, order_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(DeferredRow).where(DeferredRow.order_id == order_id).order_by(DeferredRow.received_at)
        )
        rows = list((await self.session.execute(query)).scalars())
        for row in rows:
            await self.session.delete(row)
        return [r.envelope for r in rows]

    async def template(self, merchant_id: str, language: str, kind: str) -> TemplateRow | None:
        return await self.session.get(TemplateRow, (merchant_id, language, kind))

    async def templates(self, merchant_id: str) -> list[TemplateRow]:
        query = sa.select(TemplateRow).where(TemplateRow.merchant_id == merchant_id)
        return list(
            (await self.session.execute(query.order_by(TemplateRow.language, TemplateRow.kind))).scalars()
        )

    async def notifications(
        self, *, order_id: str | None, status: str | None, limit: int
    ) -> list[NotificationRow]:
        query = sa.select(NotificationRow)
        if order_id is not None:
            query = query.where(NotificationRow.order_id == order_id)
        if status is not None:
            query = query.where(NotificationRow.status == status)
        query = query.order_by(NotificationRow.created_at, NotificationRow.id).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def merchant_for_key(self, key_hash: str) -> MerchantRow | None:
        query = sa.select(MerchantRow).join(
            MerchantKeyRow, MerchantKeyRow.merchant_id == MerchantRow.merchant_id
        )
        return (
            await self.session.execute(query.where(MerchantKeyRow.key_hash == key_hash))
        ).scalar_one_or_none()

    async def replace_keys(self, merchant_id: str, name: str, version: int, hashes: Sequence[str]) -> bool:
        """Adopt a merchant's key set unless a newer one is already here."""
        row = await self.session.get(MerchantRow, merchant_id)
        if row is not None and row.keys_version >= version:
            return False
        if row is None:
            self.session.add(MerchantRow(merchant_id=merchant_id, name=name, keys_version=version))
        else:
            row.name, row.keys_version = name, version
        await self.session.execute(sa.delete(MerchantKeyRow).where(MerchantKeyRow.merchant_id == merchant_id))
        self.session.add_all(MerchantKeyRow(key_hash=h, merchant_id=merchant_id) for h in set(hashes))
        return True


# The answers of a batch of provider calls in one UPDATE … FROM unnest(arrays), on PostgreSQL: one statement of
# the same text for any number of answers (straight to asyncpg, inside the session's transaction).
_APPLY_COLUMNS = ("id", "status", "provider_id", "error", "sent_at", "next_attempt_at", "ambiguous")
_APPLY_PG = """
UPDATE notifications AS n
SET status = c.status, provider_id = c.provider_id, error = c.error, sent_at = c.sent_at,
    next_attempt_at = c.next_attempt_at, ambiguous = n.ambiguous + c.ambiguous, lease_until = NULL
FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::text[], $5::timestamptz[], $6::timestamptz[],
            $7::integer[]) AS c(id, status, provider_id, error, sent_at, next_attempt_at, ambiguous)
WHERE n.id = c.id AND n.status = 'sending'
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for a provider call."""

    id: str
    order_id: str
    kind: str
    channel: str
    to: str
    to_hash: str
    language: str
    subject: str | None
    body: str
    html: str | None
    attempts: int
    ambiguous: int
    opted_out: bool


_CLAIMED = [f.name for f in fields(Claimed)]
# One statement on PostgreSQL: choose (SKIP LOCKED), mark, return with the opt-out check; straight to asyncpg.
_CLAIM_RETURNING = (
    'n.id, n.order_id, n.kind, n.channel, n."to", n.to_hash, n.language, n.subject, n.body, n.html, n.attempts, '
    "n.ambiguous, EXISTS (SELECT 1 FROM opt_outs o WHERE o.channel = n.channel AND o.address_hash = n.to_hash) "
    "AS opted_out"
)
_CLAIM_PG = f"""
UPDATE notifications AS n SET status = 'sending', lease_until = $2, attempts = n.attempts + 1
WHERE n.id IN (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING {_CLAIM_RETURNING}
"""  # noqa: S608 (no outside text)
_CLAIM_EXPIRED_PG = f"""
UPDATE notifications AS n
SET status = 'sending', lease_until = $2, attempts = n.attempts + 1, ambiguous = n.ambiguous + 1
WHERE n.id IN (SELECT id FROM notifications WHERE status = 'sending' AND lease_until < $1
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING {_CLAIM_RETURNING}
"""  # noqa: S608


class SendingStore:
    """The sender's side of the log: claim due messages (recorded before the provider call) and record what
    the providers answered (after it)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int, *, expired: bool = False
    ) -> list[Claimed]:
        """Claim pending messages whose time has come (or, `expired`, messages whose sender vanished mid-call:
        their lease is over and the outcome of that attempt unknown), each with whether its address opted out.
        One statement: UPDATE … RETURNING (on SQLite, and a query for the opt-outs).

        On PostgreSQL `SKIP LOCKED` lets replicas claim side by side without waiting on each other."""
        if limit <= 0:
            return []
        if is_postgres(self.session):
            driver = await driver_connection(self.session)
            found = await driver.fetch(_CLAIM_EXPIRED_PG if expired else _CLAIM_PG, now, lease_until, limit)
            return [Claimed(**r) for r in found]
        table = NOTIFICATIONS
        if expired:
            due = sa.and_(table.c.status == "sending", table.c.lease_until < now)
        else:
            due = sa.and_(table.c.status == "pending", table.c.next_attempt_at <= now)
        chosen = sa.select(table.c.id).where(due).order_by(table.c.next_attempt_at).limit(limit)
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
        values: dict[str, Any] = {
            "status": "sending",
            "lease_until": lease_until,
            "attempts": table.c.attempts + 1,
        }
        if expired:
            values["ambiguous"] = table.c.ambiguous + 1
        stmt = sa.update(table).where(table.c.id.in_(chosen.scalar_subquery())).values(values)
        columns = [table.c[name] for name in _CLAIMED if name != "opted_out"]
        rows = list((await self.session.execute(stmt.returning(*columns))).all())
        blocked = await NotifierStore(self.session).opted_out([(r.channel, r.to_hash) for r in rows])
        return [Claimed(**r._asdict(), opted_out=(r.channel, r.to_hash) in blocked) for r in rows]

    async def apply(self, changes: Sequence[dict[str, Any]]) -> None:
        """One UPDATE per message, sent as one batch; only messages still claimed are changed."""
        if not changes:
            return
        if is_postgres(self.session):
            driver = await driver_connection(self.session)
            await driver.execute(_APPLY_PG, *([c[k] for c in changes] for k in _APPLY_COLUMNS))
            return
        table = NOTIFICATIONS
        stmt = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"), table.c.status == "sending")
            .values(
                status=sa.bindparam("b_status"),
                provider_id=sa.bindparam("b_provider_id"),
                error=sa.bindparam("b_error"),
                sent_at=sa.bindparam("b_sent_at"),
                next_attempt_at=sa.bindparam("b_next_attempt_at"),
                ambiguous=table.c.ambiguous + sa.bindparam("b_ambiguous"),
                lease_until=None,
            )
        )
        await self.session.execute(stmt, [{f"b_{k}": v for k, v in c.items()} for c in changes])

    async def delivery_status(self, notification_id: str) -> NotificationRow | None:
        return await self.session.get(NotificationRow, notification_id)
