"""The bus contract harness: one set of tests, run on the InMemoryBus always and on Kafka as integration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lastmile.common.bus import EventHandler, IncomingRecord, InMemoryBus, KafkaBus, Subscription
from lastmile.common.db import Database
from lastmile.common.events import Payload
from lastmile.common.testing import create_common_tables


@dataclass
class BusHarness:
    kind: str
    bus: Any
    db: Database
    prefix: str = ""
    bootstrap: str = ""
    subscriptions: list[Subscription] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # Subscription options every test gets

    def subscribe(
        self, handlers: Mapping[type[Payload], EventHandler], group: str = "g1", **options: Any
    ) -> Subscription:
        sub = Subscription(
            service="test",
            group=group,
            db=self.db,
            handlers=handlers,
            retry_backoff_s=0.01,
            **(self.defaults | options),
        )
        self.bus.subscribe(sub)
        self.subscriptions.append(sub)
        return sub

    async def topic(self, name: str, expect: int, timeout: float = 30.0) -> list[IncomingRecord]:
        """The records on a topic (e.g. a dead-letter topic), once at least `expect` are there."""
        if isinstance(self.bus, InMemoryBus):
            deadline = asyncio.get_running_loop().time() + timeout
            while len(self.bus.records(name)) < expect and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            return self.bus.records(name)
        return await _read_kafka(self.bootstrap, self.prefix + name, expect, timeout)


async def _read_kafka(bootstrap: str, topic: str, expect: int, timeout: float) -> list[IncomingRecord]:
    from aiokafka import AIOKafkaConsumer

    # No group: the consumer takes every partition of the topic, from the beginning.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        found: list[IncomingRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expect and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                found += [
                    IncomingRecord(
                        topic, tp.partition, r.offset, r.key, r.value or b"", tuple(r.headers or ())
                    )
                    for r in records
                ]
        return found
    finally:
        await consumer.stop()


# kafka-batched: the same promises with batches across partitions and a linger (what the notifier runs).
# Tests that ask for batches get them across partitions there.
BATCHED = {"across_partitions": True, "linger_s": 0.02}


@pytest.fixture(
    params=[
        "memory",
        pytest.param("kafka", marks=pytest.mark.integration),
        pytest.param("kafka-batched", marks=pytest.mark.integration),
    ]
)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusHarness]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/bus.db")
    await create_common_tables(db)
    if request.param == "memory":
        h = BusHarness("memory", InMemoryBus(retry_backoff_s=0.01), db)
    else:
        kafka = request.getfixturevalue("kafka")
        bus = KafkaBus(kafka.bootstrap, client_id="contract", topic_prefix=kafka.prefix, partitions=3)
        defaults = BATCHED if request.param == "kafka-batched" else {}
        h = BusHarness("kafka", bus, db, prefix=kafka.prefix, bootstrap=kafka.bootstrap, defaults=defaults)
    await h.bus.start()
    try:
        yield h
    finally:
        await h.bus.stop()
        await db.dispose()
