"""Transactional outbox (publish what was committed, at least once) and inbox (handle each event once).

Every service's first migration creates both tables with `create_outbox_and_inbox(op)`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common.bus import Bus, OutgoingRecord
from lastmile.common.db import Database, UtcDateTime, insert_records, is_transient, utcnow
from lastmile.common.events import Envelope, Payload, SerialisedEnvelope, Topic
from lastmile.common.inbox import inbox_table
from lastmile.common.metrics import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

_meta = sa.MetaData()  # Core tables, bound to no service's metadata: each service's migration creates them

outbox_table = sa.Table(
    "outbox",
    _meta,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)


def create_outbox_and_inbox(op: Any) -> None:
    """Called from a service's first Alembic migration."""
    for table in (outbox_table, inbox_table):
        op.create_table(table.name, *[c._copy() for c in table.columns])


def add(
    session: AsyncSession, payload: Payload, *, source: str, envelope: Envelope | None = None
) -> Envelope:
    """Stage an event in the same transaction as the state change it announces."""
    env = envelope or payload.envelope(source, time=event_time(session))
    stage(session, payload.TOPIC, payload.key(), env)
    return env


def event_time(session: AsyncSession) -> datetime:
    """The time to stamp an event with: the service's clock (`Database.clock`), so that a simulated day's
    events carry its time, as the rows written beside them do."""
    clock = session.info.get("clock")
    return clock.now() if clock is not None else utcnow()


def stage(session: AsyncSession, topic: Topic, key: str, envelope: Envelope | SerialisedEnvelope) -> None:
    """Stage an envelope already built (`Payload.serialised`, `events.serialise`) for `topic`, keyed by `key`."""
    stage_many(session, topic, ((key, envelope),))


def stage_many(
    session: AsyncSession, topic: Topic, events: Iterable[tuple[str, Envelope | SerialisedEnvelope]]
) -> None:
    """`stage` for many envelopes of one topic, each with its key."""
    rows: list[tuple[Any, ...]] | None = session.info.get("outbox_rows")
    if rows is None:
        rows = session.info["outbox_rows"] = []
        # One insert of them all just before commit rather than one per event (Database.transaction runs it).
        session.info.setdefault("before_commit", []).append(_insert_staged)
    rows.extend(outbox_rows(topic, events))
    session.info["outbox_added"] = True


STAGED_COLUMNS = ("topic", "key", "event_id", "type", "payload", "created_at")


def outbox_rows(
    topic: Topic, events: Iterable[tuple[str, Envelope | SerialisedEnvelope]]
) -> list[tuple[str, str, str, str, bytes, datetime]]:
    """The outbox rows (`STAGED_COLUMNS`) of envelopes of one topic, each with its key: for a writer that
    inserts them itself, in one statement with its state change (then it sets `Database.outbox_signal`)."""
    name, now = topic.name, utcnow()
    return [(name, key, str(e.id), e.type, e.to_bytes(), now) for key, e in events]


async def _insert_staged(session: AsyncSession) -> None:
    rows = session.info.pop("outbox_rows", None)
    if rows:
        await insert_records(session, outbox_table, STAGED_COLUMNS, rows)


READ_PENDING = "SELECT id, topic, key, payload FROM outbox ORDER BY id LIMIT $1"
# One array parameter, where SQLAlchemy's IN renders one parameter per id.
DELETE_PUBLISHED = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"


class OutboxRelay:
    """Publishes committed outbox rows in id order, then deletes them. Crash after the broker's ack and before
    the delete ⇒ the rows go out again (same event ids), which consumers' inboxes absorb.

    On PostgreSQL one relay per database holds an advisory lock, so replicas never reorder a key's events.
    """

    LOCK_ID = 7230002

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        service: str,
        batch: int = 500,
        poll_s: float = 0.5,
        min_round_s: float = 0.0,
    ) -> None:
        """`min_round_s`: a round starts at least this long after the previous one (unless that one filled its
        batch), so that under a steady stream of small commits each round takes more events: the read, the
        delete and the publish cost about the same for one event as for dozens. Events wait up to that long."""
        self.db, self.bus, self.service = db, bus, service
        self.batch, self.poll_s, self.min_round_s = batch, poll_s, min_round_s
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self._counted_at = -float("inf")
        # On PostgreSQL, the asyncpg connection that holds the lock (autocommit): each round reads and deletes
        # through it, with no pool checkout and session per statement, and a lost session fails the round (so
        # the lock is taken again).
        self._holder: Any = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self.db.dialect == "postgresql":
                    await self._run_with_lock()
                else:
                    await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "outbox relay: %s; retrying in %.1f s", self.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2

    async def _run_with_lock(self) -> None:
        async with self.db.engine.connect() as conn:
            while True:
                got = (
                    await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.LOCK_ID})
                ).scalar()
                await conn.commit()
                if got:
                    break
                await asyncio.sleep(2.0)  # another replica relays; stand by
            try:
                self._holder = (await conn.get_raw_connection()).driver_connection
                await self._loop()
            finally:
                self._holder = None
                with contextlib.suppress(Exception):
                    await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.LOCK_ID})
                    await conn.commit()

    async def _loop(self) -> None:
        while True:
            # Cleared before reading: a commit from now on, even one the read below misses, wakes the next round.
            self.db.outbox_signal.clear()
            started = time.monotonic()
            sent = await self.publish_pending()
            self.last_error = None
            if sent >= self.batch:
                await asyncio.sleep(0)  # a turn for the others: on the in-memory bus nothing else may wait
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (and hang shutdown).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self.db.outbox_signal.wait()
            rest = started + self.min_round_s - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)

    async def publish_pending(self) -> int:
        """One batch: read, publish (await the broker's acks), delete. Returns how many were sent."""
        if self._holder is not None:
            rows = await _pending(self._holder, self.batch)
        else:
            rows = await self._read()
        if not rows:
            OUTBOX_BACKLOG.labels(self.service).set(0)
            return 0
        return await self._publish(rows)

    async def _read(self) -> list[tuple[int, str, str, bytes]]:
        async with self.db.read() as session:
            if self.db.dialect == "postgresql":
                raw = await (await session.connection()).get_raw_connection()
                driver: Any = raw.driver_connection  # asyncpg.Connection
                return await _pending(driver, self.batch)
            c = outbox_table.c
            query = sa.select(c.id, c.topic, c.key, c.payload).order_by(c.id).limit(self.batch)
            return [(r.id, r.topic, r.key, r.payload) for r in await session.execute(query)]

    async def _publish(self, rows: Sequence[tuple[int, str, str, bytes]]) -> int:
        await self.bus.publish(
            [OutgoingRecord(topic, key.encode(), payload) for _, topic, key, payload in rows]
        )
        await self._delete([r[0] for r in rows])
        for topic, count in collections.Counter(r[1] for r in rows).items():
            OUTBOX_PUBLISHED.labels(self.service, topic).inc(count)
        if len(rows) < self.batch:
            OUTBOX_BACKLOG.labels(self.service).set(0)  # it read all there was; what came since, next round
        elif time.monotonic() - self._counted_at >= 1.0:
            # count(*) scans the backlog: under load once a second, not once per batch
            await self._update_backlog()
            self._counted_at = time.monotonic()
        return len(rows)

    async def _delete(self, ids: Sequence[int]) -> None:
        if self._holder is not None:
            await self._holder.execute(DELETE_PUBLISHED, list(ids))
            return
        if self.db.dialect == "postgresql":
            # One statement, atomic on its own: no BEGIN and COMMIT round trips around it.
            async with self.db.read() as session:
                raw = await (await session.connection()).get_raw_connection()
                driver: Any = raw.driver_connection  # asyncpg.Connection, autocommit
                await driver.execute(DELETE_PUBLISHED, list(ids))
            return
        async with self.db.transaction() as session:
            await session.execute(sa.delete(outbox_table).where(outbox_table.c.id.in_(ids)))

    async def _update_backlog(self) -> None:
        async with self.db.read() as session:
            count = (await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one()
        OUTBOX_BACKLOG.labels(self.service).set(count)


async def pending_count(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one())


async def _pending(driver: Any, batch: int) -> list[tuple[int, str, str, bytes]]:
    """The oldest unpublished events through asyncpg (its records as they come: SQLAlchemy's rows cost more)."""
    return [(r[0], r[1], r[2], r[3]) for r in await driver.fetch(READ_PENDING, batch)]
