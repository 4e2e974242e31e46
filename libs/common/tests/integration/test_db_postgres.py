"""The connection pool on PostgreSQL: a pooled connection the server closed is replaced, not handed out."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from lastmile.common.db import Database, driver_connection

pytestmark = pytest.mark.integration


async def test_a_connection_the_server_terminated_is_replaced_on_checkout(postgres: Any) -> None:
    url = await postgres("pool")
    db = Database(url, pool_size=1)
    try:
        async with db.transaction() as session:
            pid = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        parsed = sa.engine.make_url(url)
        admin = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
        )
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)  # the event loop reads the end of the pooled connection's socket
        async with db.transaction() as session:  # no error: the closed connection was not handed out
            again = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != pid
    finally:
        await db.dispose()


async def test_a_statement_sent_to_the_driver_first_is_inside_the_transaction(postgres: Any) -> None:
    """SQLAlchemy's asyncpg adapter begins its transaction with its own first statement: a statement sent to
    asyncpg before it ran on its own, kept when the transaction rolled back (and its row locks were released)."""
    db = Database(await postgres("driver"))
    try:
        async with db.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (n int)"))
        in_transaction = []

        async def insert_then_fail() -> None:
            async with db.transaction() as session:
                driver = await driver_connection(session)
                await driver.execute("INSERT INTO t VALUES (1)")
                in_transaction.append(driver.is_in_transaction())
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            await insert_then_fail()
        assert in_transaction == [True]
        async with db.read() as session:
            assert (await session.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await db.dispose()
