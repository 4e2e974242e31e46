"""The connection pool on PostgreSQL: a pooled connection the server closed is replaced, not handed out."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from lastmile.common.db import Database

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
