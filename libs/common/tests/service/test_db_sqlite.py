"""The embedded mode's SQLite: a transaction or a read runs without giving the event loop a turn.

Under load a turn of the embedded platform's loop lasts tens of milliseconds; a writer that waits for turns while
it holds its database's lock makes every other writer of that database wait as long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lastmile.common.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with database.engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    yield database
    await database.dispose()


class Turns:
    """Counts the event loop's turns while it runs."""

    def __init__(self) -> None:
        self.count = 0
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_transaction_and_a_read_take_no_turn_of_the_event_loop(db: Database) -> None:
    turns = Turns()
    await asyncio.sleep(0)
    before = turns.count
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO t VALUES (1)"))
    async with db.read() as session:
        assert (await session.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 1
    during = turns.count - before
    await turns.stop()
    assert during == 0


async def test_a_failed_transaction_rolls_back_and_frees_the_writer(db: Database) -> None:
    async def insert_then_fail() -> None:
        async with db.transaction() as session:
            await session.execute(sa.text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with asyncio.timeout(1), db.transaction() as session:
        await session.execute(sa.text("INSERT INTO t VALUES (2)"))
    async with db.read() as session:
        assert (await session.execute(sa.text("SELECT x FROM t"))).scalars().all() == [2]
