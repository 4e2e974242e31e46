"""The inbox: which events each consumer has already handled, so a redelivered event has no second effect."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common.db import UtcDateTime, utcnow

inbox_table = sa.Table(
    "inbox",
    sa.MetaData(),
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("processed_at", UtcDateTime, nullable=False),
)


_CLAIM_MANY_PG = sa.text(
    "INSERT INTO inbox (consumer, event_id, processed_at) "
    "SELECT CAST(:consumer AS VARCHAR), e, CAST(:now AS TIMESTAMPTZ) FROM unnest(CAST(:ids AS VARCHAR[])) AS e "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


_CLAIM_MANY_SQLITE = (
    sqlite.insert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.event_id)  # executemany
)


async def claim(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that `consumer` handles `event_id` in this transaction; False if it already has.

    On PostgreSQL a concurrent claim of the same event waits for the first transaction, then finds the row.
    """
    values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert: Any = postgresql.insert(inbox_table) if dialect == "postgresql" else sqlite.insert(inbox_table)
    result = await session.execute(insert.values(values).on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0) == 1)


async def claim_many(session: AsyncSession, consumer: str, event_ids: list[str]) -> set[str]:
    """`claim` for many events in one statement; returns the ids not handled before."""
    if not event_ids:
        return set()
    now = utcnow()
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        # The same statement text whatever the batch size, so PostgreSQL and asyncpg reuse one prepared
        # statement (a multi-row VALUES is a new statement, parsed and planned, for every size).
        result = await session.execute(
            _CLAIM_MANY_PG, {"consumer": consumer, "ids": list(dict.fromkeys(event_ids)), "now": now}
        )
        return {row.event_id for row in result.all()}
    # Rows as parameters, not as a multi-row VALUES: SQLAlchemy compiles that afresh on every call (no cache
    # key), a part of every batch of every consumer in the embedded mode; this statement compiles once.
    rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in dict.fromkeys(event_ids)]
    return {row.event_id for row in (await session.execute(_CLAIM_MANY_SQLITE, rows)).all()}
