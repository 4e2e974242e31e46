"""The database: an async SQLAlchemy engine from a URL, one transaction() that commits, and Alembic migrations.

PostgreSQL (asyncpg) in the distributed mode, SQLite (aiosqlite) in the embedded one; service code never asks
which. One place commits: `async with db.transaction() as session` commits on success and rolls back on error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from lastmile.common.clock import Clock

log = logging.getLogger(__name__)

# Alembic's `context` and `op` are process-wide proxies: two services migrating at once in one process (the
# embedded mode) would run each other's operations. One migration at a time per process.
_MIGRATING = asyncio.Lock()


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no zone, so it is restored on read)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Why PostgreSQL refused or dropped a statement, when retrying fixes it (SQLSTATE): a connection exception
# (class 08), the server shutting down, crashed or starting up (57P01-57P03), too many connections (53300), a
# serialisation failure or a deadlock (the documented remedy: run the transaction again).
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
_TRANSIENT_NAMES = {
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "ConnectionFailureError",
    "AdminShutdownError",
    "CrashShutdownError",
    "TooManyConnectionsError",
    "DeadlockDetectedError",
    "SerializationError",
}


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean 'the database (or network) is away', which retrying fixes."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or _transient_driver_error(exc.orig):
            return True
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) and not _is_sqlite_logic(exc)
    if isinstance(exc, sa_exc.TimeoutError | ConnectionError | OSError | asyncio.TimeoutError):
        return True
    return _transient_driver_error(exc)


def _transient_driver_error(exc: BaseException | None) -> bool:
    """The driver's error (asyncpg's own, or SQLAlchemy's adaptation of it with the original as its cause):
    SQLAlchemy wraps asyncpg errors it has no class for, such as 'the database system is starting up', in a
    bare DBAPIError, so the class alone does not say whether the database is merely away."""
    for candidate in (exc, getattr(exc, "__cause__", None)):
        if candidate is None:
            continue
        if type(candidate).__name__ in _TRANSIENT_NAMES:
            return True
        if isinstance(candidate, ConnectionError | OSError | asyncio.TimeoutError):
            return True
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return True
    return False


def _is_sqlite_logic(exc: sa_exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or "syntax error" in text


class Database:
    """Owns the engine and session factory; also the in-process signal that the outbox has new rows, and the
    service's clock, which stamps the events its transactions stage (a simulated day's time, not the wall's)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        pre_ping: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.clock = clock or Clock()
        self.dialect = sa.engine.make_url(url).get_backend_name()
        self.engine: AsyncEngine = _make_engine(url, pool_size=pool_size, echo=echo, pre_ping=pre_ping)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.readers = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self.outbox_signal = asyncio.Event()
        # SQLite allows one writer; serialising writers in-process avoids 'database is locked' errors.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Commit on success, roll back on any error; wake the outbox relay if events were added."""
        async with self._writer(), self._session(self.sessions) as session, session.begin():
            session.info["clock"] = self.clock
            yield session
            for hook in session.info.pop("before_commit", []):
                await hook(session)
        if session.info.pop("outbox_added", False):
            self.outbox_signal.set()
        for callback in session.info.pop("after_commit", []):
            callback()

    @staticmethod
    def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        session.info.setdefault("after_commit", []).append(callback)

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
        else:
            async with self._write_lock:
                yield

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries only: write nothing in it, but for single statements, each atomic on its own.

        Without a transaction (autocommit): a lone SELECT is one round trip instead of three (BEGIN, SELECT,
        ROLLBACK). Under PostgreSQL's READ COMMITTED each statement sees its own snapshot either way.
        """
        async with self._session(self.readers) as session:
            yield session

    @contextlib.asynccontextmanager
    async def _session(self, factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        """A session, closed at the end. SQLAlchemy's own `async with` closes it in a task of its own, shielded
        from cancellation: three turns of the event loop. On SQLite (inline, `_InlineSqlite`) closing never
        waits, so it is closed directly: under load a turn of the embedded platform's loop lasts up to 100 ms,
        and a writer held its database's lock for those three turns, so every database managed only a few
        transactions a second (docs/benchmarks.md, the simulated day)."""
        if self.dialect != "sqlite":
            async with factory() as session:
                yield session
            return
        session = factory()
        try:
            yield session
        finally:
            await session.close()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def migrate(self, script_location: str | Path, version_table: str = "alembic_version") -> None:
        """Upgrade to head. On PostgreSQL an advisory lock keeps replicas starting together from racing."""
        async with _MIGRATING, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7230001)"))
            await conn.run_sync(_upgrade, str(script_location), version_table)


def _upgrade(connection: sa.Connection, script_location: str, version_table: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    command.upgrade(config, "head")


def _make_engine(url: str, *, pool_size: int, echo: bool, pre_ping: bool = True) -> AsyncEngine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        database = parsed.database or ":memory:"

        async def connect() -> aiosqlite.Connection:
            return await _InlineSqlite(database)

        engine = create_async_engine(url, echo=echo, async_creator=connect)
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # On asyncpg a pre-ping is three round trips (BEGIN, an empty query, ROLLBACK) per checkout; services
        # with many small transactions turn it off (`database_pre_ping`) and rely on the check at checkout below:
        # a connection the server dropped fails its next use (a transient error: callers retry) and SQLAlchemy
        # discards the pool's connections that are as old.
        pool_pre_ping=pre_ping,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    sa_event.listen(engine.sync_engine, "checkout", _drop_if_closed)
    return engine


class _InlineSqlite(aiosqlite.Connection):
    """aiosqlite without its thread: each call runs on the event loop's thread.

    SQLite answers a statement in microseconds (WAL, no fsync per commit), while aiosqlite hands every call to a
    thread of its own and back: under load each hand-off waited for the GIL (up to its 5 ms switch interval),
    so a transaction of a few dozen statements held the database's single writer for seconds (the embedded
    2,000-order day, docs/benchmarks.md). Writers of a database are serialised in-process (`Database._writer`)
    and readers never wait in WAL mode, so a call does not wait for a lock; the embedded mode's databases belong
    to its one process."""

    def __init__(self, database: str) -> None:
        super().__init__(lambda: sqlite3.connect(database, timeout=30, check_same_thread=False), 64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Any:
        return self._connect().__await__()  # no thread to start


class _RunNow:
    """Where aiosqlite (and SQLAlchemy's adapter) queue calls for the connection's thread: run at once, the
    answer set on the call's future before anyone awaits it."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


def _drop_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's check that a connection still works, without a round trip: SQLAlchemy's pre-ping on asyncpg
    costs three (BEGIN, a query, ROLLBACK) before every transaction. A connection the server closed (restart,
    termination) is known closed to asyncpg as soon as the event loop reads the end of its socket; the pool
    then discards it and hands out a fresh one. Anything subtler fails the statement, which callers retry
    (`is_transient`), and SQLAlchemy invalidates the pool on a disconnect error."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise sa_exc.DisconnectionError("connection closed by the server")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def run_migrations_env() -> None:
    """Body of every service's `migrations/env.py`: run on the connection `Database.migrate` hands over."""
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        url = os.environ.get("LASTMILE_DATABASE_URL", "")
        raise RuntimeError(f"migrations run through Database.migrate(); got no connection (url={url!r})")
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table=config.attributes.get("version_table", "alembic_version"),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


COPY_FROM = 16  # rows; COPY waits for the server between its statement and its data: two round trips, not one


async def insert_many(
    session: AsyncSession, table: sa.Table, rows: Sequence[Mapping[str, Any]], *, raw_json: Sequence[str] = ()
) -> None:
    """One multi-row INSERT in the session's transaction. On PostgreSQL it goes straight to asyncpg:
    SQLAlchemy's per-value processing was the larger part of inserting a thousand rows. From `COPY_FROM` rows on,
    as a binary COPY (one statement for all rows: about 40 % less CPU than executemany's statement per row, in
    the database and here), below it as asyncpg's pipelined executemany. Values are what the driver takes
    (aware datetimes; JSON columns named in `raw_json` as JSON text)."""
    if not rows:
        return
    columns = list(rows[0])
    if len(columns) > 1:
        values = operator.itemgetter(*columns)  # a row's values as a tuple, in C
        records = [values(r) for r in rows]
    else:
        records = [(r[columns[0]],) for r in rows]
    await insert_records(session, table, columns, records, raw_json=raw_json)


async def insert_records(
    session: AsyncSession,
    table: sa.Table,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
    *,
    raw_json: Sequence[str] = (),
) -> None:
    """`insert_many` for rows given as tuples of `columns`' values: no dict per row (for producers of many)."""
    if not records:
        return
    if session.get_bind().dialect.name != "postgresql":
        rows = [dict(zip(columns, r, strict=True)) for r in records]
        if raw_json:
            rows = [{**r, **{c: json.loads(r[c]) for c in raw_json}} for r in rows]
        await session.execute(table.insert(), rows)
        return
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    driver = await driver_connection(session)
    with integrity_errors(statement):
        if len(records) >= COPY_FROM:
            await driver.copy_records_to_table(table.name, records=records, columns=list(columns))
        else:
            await driver.executemany(statement, records)


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under a PostgreSQL session, inside the session's transaction, for statements sent
    to the driver directly. SQLAlchemy's asyncpg adapter sends BEGIN only before its own first statement: a
    statement sent to the driver before any other ran outside the transaction (autocommit), its row locks
    released at once and its changes kept even if the transaction then rolled back."""
    raw = await (await session.connection()).get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg.Connection
    if not driver.is_in_transaction():
        adapter: Any = raw.dbapi_connection
        begin = getattr(adapter, "_start_transaction", None)  # what the adapter's first statement calls
        if begin is not None and getattr(adapter, "_transaction", None) is None:
            await begin()  # nothing in autocommit sessions (`Database.read`)
        else:
            await session.execute(sa.text("SELECT 1"))
    return driver


_INTEGRITY_ERRORS = ("UniqueViolationError", "ForeignKeyViolationError", "NotNullViolationError")


@contextlib.contextmanager
def integrity_errors(statement: str) -> Iterator[None]:
    """asyncpg's constraint violations, for a statement sent to the driver directly, raised as SQLAlchemy's
    IntegrityError (as SQLAlchemy would have raised them): callers catch one class whatever the path."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ in _INTEGRITY_ERRORS:
            raise sa_exc.IntegrityError(statement, None, exc) from exc
        raise


def utcnow() -> datetime:
    return datetime.now(UTC)
