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


class RecordingProducer:
    """aiokafka's batch API over six partitions, recording what is sent; batches hold `room` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.client = type("Client", (), {"cluster": SixPartitions()})()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> SmallBatch:
        return SmallBatch(self.room)

    async def send_batch(self, batch: SmallBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class SixPartitions:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(6))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(6))


class SmallBatch(Batch):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def append(self, *, key: bytes, value: bytes, timestamp: None, headers: list[Any]) -> object:
        if len(self.records) >= self.room:
            return None
        return super().append(key=key, value=value, timestamp=timestamp, headers=headers)


async def test_publish_sends_each_key_to_the_partition_send_would_choose_in_order() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    producer = RecordingProducer(room=3)
    bus = KafkaBus("127.0.0.1:9", client_id="t", topic_prefix="p.", publish_timeout_s=1)
    bus._producer = producer
    bus._producer_ready.set()
    records = [OutgoingRecord("orders.v1", f"dep_{i % 4}".encode(), f"v{i}".encode()) for i in range(20)]
    await bus.publish(records)

    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for topic, partition, batch in producer.sent:
        assert topic == "p.orders.v1"
        assert 1 <= len(batch) <= 3  # a full batch is sent and another begun
        by_partition.setdefault(partition, []).extend(batch)
    partitioner = DefaultPartitioner()
    for partition, sent in by_partition.items():
        assert all(partitioner(key, list(range(6)), list(range(6))) == partition for key, _ in sent)
        expected = [(r.key, r.value) for r in records if (r.key, r.value) in set(sent)]
        assert sent == expected  # a partition's records in the order given
    assert sorted(v for batch in by_partition.values() for _, v in batch) == sorted(r.value for r in records)
