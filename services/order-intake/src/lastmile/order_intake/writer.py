"""Group commit for single order creations: requests that arrive together are written in one transaction.

Each request still gets its answer only after its order and its event are committed; what changes is that
concurrent requests share the transaction's round trips to the database (begin, the inserts, commit) instead of
paying them each. Under light load a group is one request, as before. A group that fails as a whole (a rare
race with a batch or another replica on a reference or a key) is retried one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lastmile.common import outbox
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import Conflict, FieldProblem, LastmileError
from lastmile.common.events import ORDERS
from lastmile.order_intake.caches import Merchant
from lastmile.order_intake.idempotency import Idempotency, Reply
from lastmile.order_intake.store import GroupStatements, IntakeStore, NewOrder, StoredResponse

log = logging.getLogger(__name__)
SOURCE = "order-intake"
Pair = tuple[str, str]  # (merchant id, key or reference)


@dataclass
class Pending:
    """One request: its order ready to insert and its answer, or the error it gets when no replay applies."""

    merchant: Merchant
    idem: Idempotency | None
    order: NewOrder | None
    body: bytes
    error: LastmileError | None = None
    future: asyncio.Future[Reply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def key(self) -> Pair | None:
        return (self.merchant.id, self.idem.key) if self.idem is not None else None

    @property
    def reference(self) -> Pair | None:
        return (self.merchant.id, self.order.reference) if self.order is not None else None


@dataclass(frozen=True)
class Twin:
    """An earlier request of the same group with the same key: answered as a replay of it."""

    first: Pending


Outcome = Reply | LastmileError | Twin | Pending  # Pending: to be written


def duplicate(reference: str, order_id: str, at: str = "#") -> Conflict:
    return Conflict(
        f"An order with reference {reference!r} exists: {order_id}",
        code="duplicate-reference",
        title="Duplicate reference",
        errors=[FieldProblem(pointer=f"{at}/reference", detail=f"already used by {order_id}")],
    )


class OrderWriter:
    def __init__(
        self, db: Database, clock: Clock, max_group: int = 256, wait_s: float = 0.0, small_group: int = 8
    ) -> None:
        """`wait_s`: how long a group smaller than `small_group` waits for more requests before it is written
        (the database work is per group: fewer, larger groups cost less CPU per order)."""
        self.db, self.clock, self.max_group = db, clock, max_group
        self.wait_s, self.small_group = wait_s, small_group
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None  # PostgreSQL: the connection kept between groups

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        await self._drop_connection()

    async def submit(self, pending: Pending) -> Reply:
        if self._task is None:  # not started: write it alone
            await self._write([pending])
        else:
            self._queue.put_nowait(pending)
        # shield: a client that goes away does not cancel a write that others share
        return await asyncio.shield(pending.future)

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            self._take(group)
            if len(group) < self.small_group and self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
                self._take(group)
            try:
                await self._write(group)
            except Exception as exc:  # never leave a request waiting, nor stop writing for the next ones
                log.exception("order writer failed on a group of %d", len(group))
                _fail(group, exc)

    def _take(self, group: list[Pending]) -> None:
        while len(group) < self.max_group and not self._queue.empty():
            group.append(self._queue.get_nowait())

    async def _write(self, group: list[Pending]) -> None:
        try:
            outcomes = await self._commit(group)
        except IntegrityError as exc:
            if len(group) == 1:
                _fail(group, exc)
                return
            log.info("a group of %d collided with another writer; writing one at a time", len(group))
            for pending in group:
                await self._write([pending])
            return
        except Exception as exc:  # the database is away, say: each request answers with the error
            _fail(group, exc)
            return
        for pending, outcome in zip(group, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, Reply):
                pending.future.set_result(outcome)
            else:
                pending.future.set_exception(outcome)

    async def _commit(self, group: list[Pending]) -> list[Reply | LastmileError]:
        if self.db.dialect == "postgresql" and self._task is None:  # not started: on a pooled connection
            async with self.db.read() as session:
                outcomes, accepted = await self._decide_and_insert(IntakeStore(session), group)
        elif self.db.dialect == "postgresql":
            # Outside a transaction: a read, then one insert statement that is atomic on its own; a reference or
            # a key taken between the two fails the insert, as it would have failed it in a transaction. Only
            # the writer's task comes here, one group at a time.
            statements = GroupStatements(await self._driver())
            try:
                outcomes, accepted = await self._decide_and_insert(statements, group)
            except IntegrityError:
                raise
            except BaseException:  # the connection may be broken, or mid-statement (cancelled): not reused
                await self._drop_connection()
                raise
        else:
            async with self.db.transaction() as session:
                outcomes, accepted = await self._decide_and_insert(IntakeStore(session), group)
        if accepted:
            self.db.outbox_signal.set()
        return outcomes

    async def _decide_and_insert(
        self, store: IntakeStore | GroupStatements, group: list[Pending]
    ) -> tuple[list[Reply | LastmileError], bool]:
        stored, taken = await store.claimed(
            [p.key for p in group if p.key is not None],
            [p.reference for p in group if p.reference is not None],
        )
        firsts: dict[Pair, Pending] = {}
        outcomes = [_decide(p, stored, taken, firsts) for p in group]
        kept = [p for p, o in zip(group, outcomes, strict=True) if o is p and p.order is not None]
        if kept:
            orders = [p.order for p in kept if p.order is not None]
            now = self.clock.now()
            await store.accept(
                orders,
                "received",
                outbox.outbox_rows(ORDERS, [(o.depot_id, o.envelope) for o in orders]),
                [(p.merchant.id, p.idem.key, p.idem.request_hash, 201, p.body, now) for p in kept if p.idem],
            )
        return [_settle(p, o) for p, o in zip(group, outcomes, strict=True)], bool(kept)

    async def _driver(self) -> Any:
        """The asyncpg connection kept between groups: no pool checkout and session per group. A connection the
        server closed (a restart) is replaced before use.

        Its statements are planned for each group (`force_custom_plan`): PostgreSQL's default switches a
        prepared statement to a generic plan after five runs, and a generic plan made while the tables were
        small (a new database: no statistics yet) scanned the whole tables for each group's lookups, at 0.5 ms
        of database CPU per order and growing, until an autovacuum ANALYZE happened to replace it."""
        driver: Any
        if self._conn is not None:
            driver = (await self._conn.get_raw_connection()).driver_connection
            if not driver.is_closed():
                return driver
        await self._drop_connection()
        conn = await self.db.engine.connect()
        try:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("SET plan_cache_mode = force_custom_plan")
        except BaseException:
            await _discard(conn)
            raise
        self._conn = conn
        return driver

    async def _drop_connection(self) -> None:
        """Closed rather than returned to the pool: its session's plan setting stays with it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await _discard(conn)


async def _discard(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


def _decide(
    pending: Pending, stored: dict[Pair, StoredResponse], taken: dict[Pair, str], firsts: dict[Pair, Pending]
) -> Outcome:
    try:
        if pending.key is not None and pending.idem is not None:
            if pending.key in stored:
                return pending.idem.replay(stored[pending.key])
            if pending.key in firsts:
                return Twin(firsts[pending.key])
        if pending.error is not None:
            return pending.error
        assert pending.order is not None
        assert pending.reference is not None
        if pending.reference in taken:
            return duplicate(pending.order.reference, taken[pending.reference])
    except LastmileError as exc:
        return exc
    taken[pending.reference] = pending.order.order_id
    if pending.key is not None:
        firsts[pending.key] = pending
    return pending


def _settle(pending: Pending, outcome: Outcome) -> Reply | LastmileError:
    if isinstance(outcome, Twin):
        first = outcome.first
        assert pending.idem is not None
        assert first.idem is not None
        try:
            return pending.idem.replay(StoredResponse(first.idem.request_hash, 201, first.body))
        except LastmileError as exc:
            return exc
    if isinstance(outcome, Pending):
        return Reply(201, outcome.body)
    return outcome


def _fail(group: list[Pending], exc: BaseException) -> None:
    for pending in group:
        if not pending.future.done():
            pending.future.set_exception(exc)
