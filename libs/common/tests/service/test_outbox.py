"""The outbox publishes what was committed, in order, at least once; nothing that was rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.testing import create_common_tables, eventually

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def arrived(order: str) -> ev.Arrived:
    return ev.Arrived(order_id=order, vehicle_id="veh_1", at=T0)


async def stage(db: Database, orders: list[str]) -> None:
    async with db.transaction() as session:
        for order in orders:
            outbox.add(session, arrived(order), source="test")


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await create_common_tables(database)
    yield database
    await database.dispose()


async def test_publishes_committed_events_in_order_and_empties_the_table(db: Database) -> None:
    bus = InMemoryBus()
    relay = outbox.OutboxRelay(db, bus, service="test", batch=7, poll_s=0.05)
    await stage(db, [f"ord_{i}" for i in range(20)])
    relay.start()
    try:
        await eventually(lambda: len(bus.records("deliveries.v1")) == 20)
        assert await outbox.pending_count(db) == 0
    finally:
        await relay.stop()
    subjects = [ev.Envelope.from_bytes(r.value).subject for r in bus.records("deliveries.v1")]
    assert sorted(subjects) == sorted(f"ord_{i}" for i in range(20))


async def test_publishes_nothing_that_was_rolled_back(db: Database) -> None:
    bus = InMemoryBus()

    async def failing_change() -> None:
        async with db.transaction() as session:
            outbox.add(session, arrived("ord_never"), source="test")
            raise RuntimeError("the business change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert await outbox.pending_count(db) == 0
    assert await outbox.OutboxRelay(db, bus, service="test").publish_pending() == 0


async def test_a_failed_publish_keeps_the_rows_for_the_next_attempt(db: Database) -> None:
    class Down(InMemoryBus):
        async def publish(self, records: Any) -> None:
            raise ConnectionError("broker down")

    await stage(db, ["ord_a", "ord_b"])
    with pytest.raises(ConnectionError):
        await outbox.OutboxRelay(db, Down(), service="test").publish_pending()
    assert await outbox.pending_count(db) == 2
    bus = InMemoryBus()
    assert await outbox.OutboxRelay(db, bus, service="test").publish_pending() == 2
    assert len(bus.records("deliveries.v1")) == 2


async def test_with_a_minimum_round_interval_commits_in_quick_succession_go_out_in_one_round(
    db: Database,
) -> None:
    rounds: list[int] = []  # events per publish, that is per round

    class Counting(InMemoryBus):
        async def publish(self, records: Any) -> None:
            rounds.append(len(records))
            await super().publish(records)

    bus = Counting()
    relay = outbox.OutboxRelay(db, bus, service="test", poll_s=5.0, min_round_s=0.3)
    relay.start()
    try:
        await stage(db, ["ord_first"])
        await eventually(lambda: rounds == [1])  # the first commit goes out at once
        for i in range(5):  # five commits, each of which wakes the relay
            await stage(db, [f"ord_{i}"])
        await eventually(lambda: len(bus.records("deliveries.v1")) == 6)
    finally:
        await relay.stop()
    assert rounds == [1, 5]


async def test_events_carry_the_time_of_the_database_s_clock(tmp_path: Path) -> None:
    """A simulated day's events are stamped with its time, as the rows written beside them are."""
    epoch = datetime(2031, 3, 4, 9, tzinfo=UTC)  # a day the wall clock is not on
    day = Clock(speed=300.0, epoch=epoch)
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/clocked.db", clock=day)
    await create_common_tables(database)
    try:
        await stage(database, ["ord_a"])
        bus = InMemoryBus()
        assert await outbox.OutboxRelay(database, bus, service="test").publish_pending() == 1
    finally:
        await database.dispose()
    stamped = ev.Envelope.from_bytes(bus.records("deliveries.v1")[0].value).time
    assert epoch <= stamped < epoch + timedelta(hours=1)
