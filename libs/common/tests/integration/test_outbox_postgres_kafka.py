"""The outbox on PostgreSQL relaying to the real broker, including a relay that dies after the broker's ack."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.bus import KafkaBus
from lastmile.common.db import Database
from lastmile.common.testing import create_common_tables

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


async def read_all(bootstrap: str, topic: str, expect: int) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < expect:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += records
    finally:
        await consumer.stop()
    return found


async def test_relay_after_a_crash_between_ack_and_delete_republishes_the_same_event_ids(
    kafka: Any, postgres: Any
) -> None:
    db = Database(await postgres("outbox"))
    await create_common_tables(db)
    bus = KafkaBus(kafka.bootstrap, client_id="outbox-test", topic_prefix=kafka.prefix, partitions=3)
    await bus.start()
    try:
        async with db.transaction() as session:
            staged = [
                outbox.add(session, ev.Arrived(order_id=f"ord_{i}", vehicle_id="v", at=T0), source="t")
                for i in range(10)
            ]

        class DiesBeforeDelete(outbox.OutboxRelay):
            async def _delete(self, ids: Any) -> None:
                raise SystemExit("relay killed after the broker acknowledged")

        with pytest.raises(SystemExit):
            await DiesBeforeDelete(db, bus, service="t").publish_pending()
        assert await outbox.pending_count(db) == 10
        assert await outbox.OutboxRelay(db, bus, service="t").publish_pending() == 10
        assert await outbox.pending_count(db) == 0

        records = await read_all(kafka.bootstrap, kafka.prefix + "deliveries.v1", 20)
        ids = [ev.Envelope.from_bytes(r.value).id for r in records]
        assert sorted(ids) == sorted([e.id for e in staged] * 2)  # twice each, same ids: consumers dedupe
        async with db.read() as session:
            count = (await session.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one()
        assert count == 0
    finally:
        await bus.stop()
        await db.dispose()
