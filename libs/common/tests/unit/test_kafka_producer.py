"""A Kafka producer that a fatal idempotence error stopped is replaced, so the relay's next attempt can send.

(The fault test that found it, tests/faults/test_city.py, restarts a real broker under load; this pins the
mechanism without one.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from lastmile.common.bus import KafkaBus, OutgoingRecord


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None, headers: list[Any]) -> object:
        self.records.append((key, value))
        return object()


class FailingProducer:
    """aiokafka's batch API (what KafkaBus.publish uses), every batch failing with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error, self.stopped = error, False
        self.client = type("Client", (), {"cluster": Cluster()})()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(self.error)
        return future

    async def stop(self) -> None:
        self.stopped = True


def bus_with(producer: FailingProducer) -> tuple[KafkaBus, list[str]]:
    bus = KafkaBus("127.0.0.1:9", client_id="t", publish_timeout_s=1)
    bus._producer = producer
    bus._producer_ready.set()
    reconnects: list[str] = []

    async def reconnect() -> None:
        reconnects.append("connect")

    bus._connect_producer = reconnect  # type: ignore[method-assign]
    return bus, reconnects


async def test_a_producer_stopped_by_out_of_order_sequence_is_replaced() -> None:
    broken = FailingProducer(OutOfOrderSequenceNumber())
    bus, reconnects = bus_with(broken)
    with pytest.raises(OutOfOrderSequenceNumber):
        await bus.publish([OutgoingRecord("orders.v1", b"k", b"v")])
    await asyncio.gather(*bus._tasks)
    assert broken.stopped
    assert bus._producer is None
    assert not bus._producer_ready.is_set()
    assert reconnects == ["connect"]
    with pytest.raises(ConnectionError):
        await bus.check()


async def test_a_retriable_error_keeps_the_producer() -> None:
    flaky = FailingProducer(KafkaConnectionError())
    bus, reconnects = bus_with(flaky)
    with pytest.raises(KafkaConnectionError):
        await bus.publish([OutgoingRecord("orders.v1", b"k", b"v")])
    assert bus._producer is flaky
    assert not flaky.stopped
    assert reconnects == []
