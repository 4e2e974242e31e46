"""The event bus: one interface, two implementations with the same delivery semantics.

- KafkaBus (aiokafka): idempotent producer (acks=all), consumer groups, offsets committed only after the
  handler's transaction committed.
- InMemoryBus: the embedded mode and fast tests; per-key order (keys hash to partitions), one delivery per
  consumer group, redelivery when handling fails.

Both hand each record to the same `Dispatcher`, which decodes and validates it, runs the handler inside a
database transaction that also records the event id in the inbox (so a redelivered event has no second
effect), retries a failing handler a bounded number of times, and dead-letters what cannot be handled to
`<topic>.dlq` with the reason. Errors that mean 'the database is away' are not the event's fault: the record is
redelivered until the database is back, and its offset is not committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka.abc import ConsumerRebalanceListener
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import metrics
from lastmile.common.db import Database, is_transient
from lastmile.common.events import EVENT_TYPES, TOPICS, Envelope, Payload, UnknownEventType
from lastmile.common.inbox import claim, claim_many
from lastmile.common.logging import log_context

log = logging.getLogger(__name__)

EventHandler = Callable[[AsyncSession, Envelope, Any], Awaitable[None]]
D = TypeVar("D")
HandlerWithDeps = Callable[[AsyncSession, Envelope, Any, D], Awaitable[None]]


def bind(handlers: Mapping[type[Payload], HandlerWithDeps[D]], deps: D) -> dict[type[Payload], EventHandler]:
    """SUBSCRIPTIONS whose handlers take `deps` last, bound to this app's deps."""
    return {cls: functools.partial(fn, deps=deps) for cls, fn in handlers.items()}  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Subscription:
    """What one consumer group of one service handles: payload class → handler(session, envelope, payload)."""

    service: str
    group: str
    db: Database
    handlers: Mapping[type[Payload], EventHandler]
    inbox: bool = True
    max_attempts: int = 5
    max_event_bytes: int = 512 * 1024
    retry_backoff_s: float = 0.05
    # Records of one partition handled in one transaction (1: a transaction per record). A batch that fails
    # is handled again one record at a time, so only the bad record is retried and dead-lettered.
    batch: int = 1
    # Kafka: records of every partition in one fetch share the batches (rather than a transaction per
    # partition), and a fetch smaller than `batch` waits up to `linger_s` for more first. At a steady rate
    # spread over many partitions each fetch holds a few records per partition, so without these most
    # transactions carry one or two events and their fixed cost is paid per event.
    across_partitions: bool = False
    linger_s: float = 0.0
    # Event types whose handlers are idempotent by a natural key of their own (a version, a per-key timestamp):
    # no inbox row is written for them, which matters on high-volume topics (the tracker's locations.v1).
    inbox_exempt: frozenset[type[Payload]] = frozenset()

    def uses_inbox(self, type_: str) -> bool:
        return self.inbox and EVENT_TYPES.get(type_) not in self.inbox_exempt

    @property
    def topics(self) -> list[str]:
        return sorted({cls.TOPIC.name for cls in self.handlers})

    def handler_for(self, type_: str) -> EventHandler | None:
        cls = EVENT_TYPES.get(type_)
        return self.handlers.get(cls) if cls else None


class RetryLater(Exception):
    """The record could not be handled for a reason outside it (database or broker away): redeliver it."""


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Returns once every record is acknowledged (acks=all on Kafka)."""

    def subscribe(self, subscription: Subscription) -> None: ...

    def unsubscribe(self, subscription: Subscription) -> None: ...

    async def check(self) -> None:
        """Raises if the bus cannot be reached now (readiness)."""


class Dispatcher:
    """Turns one record into exactly one effect, or one dead letter."""

    def __init__(self, bus: Bus, subscription: Subscription) -> None:
        self.bus = bus
        self.sub = subscription

    async def process(self, record: IncomingRecord) -> None:
        started = time.perf_counter()
        outcome = await self._process(record)
        metrics.EVENTS_CONSUMED.labels(self.sub.service, record.topic, outcome).inc()
        metrics.EVENT_HANDLE_LATENCY.labels(self.sub.service, record.topic).observe(
            time.perf_counter() - started
        )

    async def process_batch(self, records: Sequence[IncomingRecord]) -> None:
        """Up to `batch` records in one transaction; the same effects as `process` on each, in order."""
        if self.sub.batch <= 1 or len(records) <= 1:
            for record in records:
                await self.process(record)
            return
        started = time.perf_counter()
        ready: list[tuple[IncomingRecord, Envelope, Payload, EventHandler]] = []
        for record in records:
            parsed = self._parse(record)
            if parsed is None:  # poison, or a type this consumer ignores: no effect, order does not matter
                await self.process(record)
            else:
                ready.append(parsed)
        if not ready:
            return
        try:
            outcomes = await self._handle_batch(ready)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                metrics.EVENTS_FAILED.labels(self.sub.service, ready[0][0].topic, "transient").inc()
                raise RetryLater(str(exc)) from exc
            log.warning("batch of %d failed (%s); handling its records one by one", len(ready), _short(exc))
            for record, *_ in ready:
                await self.process(record)
            return
        elapsed = time.perf_counter() - started
        for (record, *_), outcome in zip(ready, outcomes, strict=True):
            metrics.EVENTS_CONSUMED.labels(self.sub.service, record.topic, outcome).inc()
            metrics.EVENT_HANDLE_LATENCY.labels(self.sub.service, record.topic).observe(elapsed)

    async def _handle_batch(
        self, ready: list[tuple[IncomingRecord, Envelope, Payload, EventHandler]]
    ) -> list[str]:
        outcomes = []
        async with self.sub.db.transaction() as session:
            # Handlers may look at the whole batch (e.g. to load what all its events need in one query).
            session.info["batch"] = [payload for _, _, payload, _ in ready]
            ids = [str(envelope.id) for _, envelope, _, _ in ready if self.sub.uses_inbox(envelope.type)]
            fresh = await claim_many(session, self.sub.group, ids)
            for record, envelope, payload, handler in ready:
                event_id = str(envelope.id)
                if self.sub.uses_inbox(envelope.type):
                    if event_id not in fresh:
                        outcomes.append("duplicate")
                        continue
                    fresh.discard(event_id)  # the same event twice in one batch: the second is a duplicate
                with log_context(
                    event_id=event_id, topic=record.topic, order_id=getattr(payload, "order_id", None)
                ):
                    await handler(session, envelope, payload)
                outcomes.append("handled")
        return outcomes

    def _parse(self, record: IncomingRecord) -> tuple[IncomingRecord, Envelope, Payload, EventHandler] | None:
        """The record ready for its handler, or None when `process` must decide (dead letter or ignore)."""
        if len(record.value) > self.sub.max_event_bytes:
            return None
        try:
            envelope = Envelope.from_bytes(record.value)
            handler = self.sub.handler_for(envelope.type)
            if handler is None:
                return None
            return record, envelope, envelope.payload(), handler
        except (ValidationError, UnknownEventType):
            return None

    async def _process(self, record: IncomingRecord) -> str:
        if len(record.value) > self.sub.max_event_bytes:
            return await self._dead_letter(record, "oversize", f"{len(record.value)} bytes", 1)
        try:
            envelope = Envelope.from_bytes(record.value)
        except ValidationError as exc:
            return await self._dead_letter(record, "invalid-envelope", _short(exc), 1)
        handler = self.sub.handler_for(envelope.type)
        if handler is None:
            if envelope.type in EVENT_TYPES:
                return "ignored"  # a known event this consumer has no use for
            return await self._dead_letter(record, "unknown-type", envelope.type, 1)
        try:
            payload = envelope.payload()
        except (ValidationError, UnknownEventType) as exc:
            return await self._dead_letter(record, "schema", _short(exc), 1)
        with log_context(
            event_id=str(envelope.id), topic=record.topic, order_id=getattr(payload, "order_id", None)
        ):
            return await self._handle(record, envelope, payload, handler)

    async def _handle(
        self, record: IncomingRecord, envelope: Envelope, payload: Payload, handler: EventHandler
    ) -> str:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.sub.db.transaction() as session:
                    if self.sub.uses_inbox(envelope.type) and not await claim(
                        session, self.sub.group, str(envelope.id)
                    ):
                        return "duplicate"
                    await handler(session, envelope, payload)
                return "handled"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    metrics.EVENTS_FAILED.labels(self.sub.service, record.topic, "transient").inc()
                    raise RetryLater(str(exc)) from exc
                metrics.EVENTS_FAILED.labels(self.sub.service, record.topic, "handler").inc()
                if attempt >= self.sub.max_attempts:
                    log.exception("handler failed %d times; dead-lettering %s", attempt, envelope.type)
                    return await self._dead_letter(record, "handler-error", _short(exc), attempt)
                log.warning("handler failed (attempt %d): %s", attempt, _short(exc))
                await asyncio.sleep(self.sub.retry_backoff_s * 2 ** (attempt - 1))

    async def _dead_letter(self, record: IncomingRecord, reason: str, error: str, attempts: int) -> str:
        headers = (
            *record.headers,
            ("dlq.reason", reason.encode()),
            ("dlq.error", error.encode()[:2000]),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.group", self.sub.group.encode()),
            ("dlq.attempts", str(attempts).encode()),
        )
        dlq = OutgoingRecord(f"{record.topic}.dlq", record.key or b"", record.value, headers)
        try:
            await self.bus.publish([dlq])
        except Exception as exc:
            raise RetryLater(f"dead-letter publish failed: {exc}") from exc
        metrics.EVENTS_DEAD_LETTERED.labels(self.sub.service, record.topic, reason).inc()
        log.warning(
            "dead-lettered %s/%d@%d: %s %s", record.topic, record.partition, record.offset, reason, error
        )
        return "dead-lettered"


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 1000 else text[:1000] + "…"


def partition_for(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


# ---------------------------------------------------------------------------------------------------------
# In-memory


@dataclass
class _Group:
    members: list[Dispatcher] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class InMemoryBus:
    """Kafka's delivery semantics in one process: partitions by key, groups with committed offsets."""

    def __init__(self, partitions: int = 4, *, retry_backoff_s: float = 0.2) -> None:
        self.partitions = partitions
        self.retry_backoff_s = retry_backoff_s
        self._logs: dict[str, list[list[IncomingRecord]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._subs: dict[int, tuple[Subscription, Dispatcher]] = {}
        self._changed: asyncio.Condition | None = None
        self._started = False

    def _log(self, topic: str) -> list[list[IncomingRecord]]:
        if topic not in self._logs:
            self._logs[topic] = [[] for _ in range(self.partitions)]
        return self._logs[topic]

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def start(self) -> None:
        self._started = True
        for (group, topic), state in self._groups.items():
            self._spawn(group, topic, state)

    async def stop(self) -> None:
        self._started = False
        tasks = [t for g in self._groups.values() for t in g.tasks]
        for g in self._groups.values():
            g.tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        for r in records:
            partitions = self._log(r.topic)
            p = partition_for(r.key, self.partitions)
            partitions[p].append(IncomingRecord(r.topic, p, len(partitions[p]), r.key, r.value, r.headers))
        cond = self._cond()
        async with cond:
            cond.notify_all()

    def subscribe(self, subscription: Subscription) -> None:
        dispatcher = Dispatcher(self, subscription)
        self._subs[id(subscription)] = (subscription, dispatcher)
        for topic in subscription.topics:
            state = self._groups.setdefault((subscription.group, topic), _Group())
            state.members.append(dispatcher)
            if self._started and not state.tasks:
                self._spawn(subscription.group, topic, state)

    def unsubscribe(self, subscription: Subscription) -> None:
        entry = self._subs.pop(id(subscription), None)
        if entry is None:
            return
        for topic in subscription.topics:
            state = self._groups.get((subscription.group, topic))
            if state and entry[1] in state.members:
                state.members.remove(entry[1])

    async def check(self) -> None:
        return None

    def _spawn(self, group: str, topic: str, state: _Group) -> None:
        for p in range(self.partitions):
            state.tasks.append(
                asyncio.create_task(self._consume(topic, p, state), name=f"mem-{group}-{topic}-{p}")
            )

    async def _consume(self, topic: str, partition: int, state: _Group) -> None:
        log_ = self._log(topic)[partition]
        cond = self._cond()
        backoff = self.retry_backoff_s
        while True:
            offset = state.offsets[partition]
            if offset >= len(log_) or not state.members:
                async with cond:
                    await cond.wait_for(lambda: state.offsets[partition] < len(log_) and bool(state.members))
                continue
            member = state.members[partition % len(state.members)]
            chunk = log_[offset : offset + max(1, member.sub.batch)]
            try:
                await member.process_batch(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redeliver the same record after a pause, as Kafka would
                log.warning("in-memory redelivery of %s/%d@%d: %s", topic, partition, offset, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = self.retry_backoff_s
            state.offsets[partition] = offset + len(chunk)
            # A turn for every other task, as a Kafka fetch gives them: a batch may run without ever waiting
            # (SQLite inline), and a consumer with a backlog would otherwise hold the loop until it is through.
            await asyncio.sleep(0)

    # Test helpers: what was published, decoded.
    def records(self, topic: str) -> list[IncomingRecord]:
        return sorted((r for p in self._log(topic) for r in p), key=lambda r: (r.partition, r.offset))

    def envelopes(self, topic: str, type_: str | None = None) -> list[Envelope]:
        found = [Envelope.from_bytes(r.value) for r in self.records(topic)]
        return [e for e in found if type_ is None or e.type == type_]

    def pending(self, group: str, topic: str) -> int:
        state = self._groups.get((group, topic))
        done = sum(state.offsets.values()) if state else 0
        return sum(len(p) for p in self._log(topic)) - done


# ---------------------------------------------------------------------------------------------------------
# Kafka


class KafkaBus:
    """aiokafka, connecting in the background so a service starts (not ready) while the broker is down."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        topic_prefix: str = "",
        partitions: int = 6,
        replication_factor: int = 1,
        create_topics: bool = True,
        publish_timeout_s: float = 60.0,
        request_timeout_ms: int = 15000,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 100,
    ) -> None:
        self.bootstrap = bootstrap_servers
        self.client_id = client_id
        self.prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.create_topics = create_topics
        self.publish_timeout_s = publish_timeout_s
        self.request_timeout_ms = request_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # A fetch is answered once it has fetch_min_bytes or has waited fetch_max_wait_ms: a consumer of many
        # small events (the tracker's positions) gets them in fewer, larger batches (fewer transactions).
        self.fetch_min_bytes, self.fetch_max_wait_ms = fetch_min_bytes, fetch_max_wait_ms
        self._producer: Any = None
        self._producer_ready = asyncio.Event()
        self._consumers: dict[int, _KafkaConsumerLoop] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.last_error: str | None = None

    def physical(self, topic: str) -> str:
        return self.prefix + topic

    def logical(self, topic: str) -> str:
        return topic[len(self.prefix) :] if self.prefix and topic.startswith(self.prefix) else topic

    async def start(self) -> None:
        self._started = True
        self._tasks.append(asyncio.create_task(self._connect_producer(), name="kafka-producer"))
        for loop in self._consumers.values():
            loop.start()

    async def _connect_producer(self) -> None:
        from aiokafka import AIOKafkaProducer

        backoff = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.client_id}-producer",
                enable_idempotence=True,  # implies acks=all
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=self.request_timeout_ms,
                retry_backoff_ms=200,
            )
            try:
                await producer.start()
                if self.create_topics:
                    await self._ensure_topics()
            except Exception as exc:
                self.last_error = f"broker unreachable: {exc}"
                log.warning("kafka producer: %s; retrying in %.1f s", self.last_error, backoff)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = producer
            self.last_error = None
            self._producer_ready.set()
            return

    async def _ensure_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [self.physical(n) for t in TOPICS for n in (t.name, t.dlq)]
            missing = [
                NewTopic(name, self.partitions, self.replication_factor)
                for name in wanted
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await admin.close()

    async def stop(self) -> None:
        self._started = False
        for loop in list(self._consumers.values()):
            await loop.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)
            self._producer = None
            self._producer_ready.clear()

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        producer = None
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._producer_ready.wait()
            producer = self._producer
            futures = await _send_batches(producer, [(self.physical(r.topic), r) for r in records])
            # Idempotent batches never expire, so a send during an outage waits for the broker; bound it.
            await asyncio.wait_for(asyncio.gather(*futures), self.publish_timeout_s)
        except TimeoutError as exc:
            raise ConnectionError("kafka publish timed out") from exc
        except Exception as exc:
            if producer is not None and producer is self._producer and _producer_broken(producer, exc):
                await self._replace_producer(producer, exc)
            raise

    async def _replace_producer(self, broken: Any, exc: BaseException) -> None:
        """An idempotent producer whose sender stopped on a fatal error never sends again: aiokafka ends its
        sender task on OutOfOrderSequenceNumber (seen after the broker was restarted under load) and fails every
        later send. Replace it; what it had not delivered is still in the outbox and goes out again with the
        new producer (a new producer id; consumers' inboxes drop what the old one had delivered after all)."""
        log.warning("kafka producer broken (%s); replacing it", _short(exc))
        self.last_error = f"producer broken: {_short(exc)}"
        self._producer = None
        self._producer_ready.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broken.stop(), 10)
        self._tasks.append(asyncio.create_task(self._connect_producer(), name="kafka-producer"))

    def subscribe(self, subscription: Subscription) -> None:
        loop = _KafkaConsumerLoop(self, subscription)
        self._consumers[id(subscription)] = loop
        if self._started:
            loop.start()

    def unsubscribe(self, subscription: Subscription) -> None:
        loop = self._consumers.pop(id(subscription), None)
        if loop is not None:
            self._tasks.append(asyncio.create_task(loop.stop()))

    async def check(self) -> None:
        if self._producer is None:
            raise ConnectionError(self.last_error or "kafka producer not connected yet")
        client = self._producer.client
        node = client.get_random_node()
        if node is None or not await asyncio.wait_for(client.ready(node), 2.0):
            raise ConnectionError(f"kafka broker {self.bootstrap} not reachable")
        for loop in self._consumers.values():
            if loop.last_error:
                raise ConnectionError(f"consumer {loop.sub.group}: {loop.last_error}")


async def _send_batches(producer: Any, records: Sequence[tuple[str, OutgoingRecord]]) -> list[Any]:
    """Hand `records` to the producer as one record batch per partition (several when one fills up), in order.

    What `send()` per record does, for a fraction of its cost: `send()` looks the partition up (a pure-Python
    murmur2 of the key) and queues each record through the accumulator on its own. The partition is aiokafka's
    own choice for the key (its default partitioner, the Java client's), so a key's records land where `send()`
    put them; records of a partition keep their order, and batches of a partition are queued in order."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    futures: list[Any] = []
    builders: dict[tuple[str, int], Any] = {}
    partitions: dict[str, tuple[list[int], list[int]]] = {}
    chosen: dict[tuple[str, bytes], int] = {}
    for topic, r in records:
        partition = chosen.get((topic, r.key))
        if partition is None:
            if topic not in partitions:
                await producer.partitions_for(topic)  # waits for the topic's metadata
                cluster = producer.client.cluster
                partitions[topic] = (
                    list(cluster.partitions_for_topic(topic)),
                    list(cluster.available_partitions_for_topic(topic)),
                )
            partition = chosen[(topic, r.key)] = partitioner(r.key, *partitions[topic])
        builder = builders.get((topic, partition))
        if builder is None:
            builder = builders[(topic, partition)] = producer.create_batch()
        headers = list(r.headers)
        if builder.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:  # full
            futures.append(await producer.send_batch(builder, topic, partition=partition))
            builder = builders[(topic, partition)] = producer.create_batch()
            builder.append(key=r.key, value=r.value, timestamp=None, headers=headers)  # the first always fits
    for (topic, partition), builder in builders.items():
        futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures


def _producer_broken(producer: Any, exc: BaseException) -> bool:
    """True when `producer` will never send again: a fatal idempotence error, or its sender task has ended."""
    from aiokafka.errors import (
        InvalidProducerEpoch,
        OutOfOrderSequenceNumber,
        ProducerFenced,
        UnknownProducerId,
    )

    if isinstance(exc, OutOfOrderSequenceNumber | UnknownProducerId | InvalidProducerEpoch | ProducerFenced):
        return True
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return bool(task is not None and task.done())


class _KafkaConsumerLoop:
    def __init__(self, bus: KafkaBus, subscription: Subscription) -> None:
        self.bus = bus
        self.sub = subscription
        self.dispatcher = Dispatcher(bus, subscription)
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kafka-consumer-{self.sub.group}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "consumer %s: %s; reconnecting in %.1f s", self.sub.group, self.last_error, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap,
            client_id=f"{self.bus.client_id}-{self.sub.group}",
            group_id=self.bus.prefix + self.sub.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.bus.session_timeout_ms,
            heartbeat_interval_ms=self.bus.heartbeat_interval_ms,
            request_timeout_ms=max(self.bus.request_timeout_ms, self.bus.session_timeout_ms + 1000),
            max_poll_records=500,
            fetch_min_bytes=self.bus.fetch_min_bytes,
            fetch_max_wait_ms=self.bus.fetch_max_wait_ms,
            # Range assignment gives one member the same partitions of every topic it reads, so topics keyed
            # alike (routes.v1 and locations.v1 by vehicle) are co-partitioned: one member owns a vehicle.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        consumer.subscribe(
            [self.bus.physical(t) for t in self.sub.topics], listener=_RevokeListener(self._idle)
        )
        await consumer.start()
        self._consumer = consumer
        self.last_error = None
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                if not batches:
                    continue
                self._idle.clear()
                try:
                    if self.sub.across_partitions and self.sub.batch > 1:
                        await self._linger(consumer, batches)
                        await self._all_partitions(consumer, batches)
                    else:
                        done = await asyncio.gather(
                            *(self._partition(consumer, tp, recs) for tp, recs in batches.items())
                        )
                        # One commit request for every partition of the fetch, not one round trip each.
                        await self._commit(
                            consumer, {tp: offset for tp, offset in done if offset is not None}
                        )
                finally:
                    self._idle.set()
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)

    async def _linger(self, consumer: Any, batches: dict[Any, list[Any]]) -> None:
        """Add what arrives within `linger_s` to a fetch smaller than a batch (in place)."""
        have = sum(len(r) for r in batches.values())
        if self.sub.linger_s <= 0 or have >= self.sub.batch:
            return
        await asyncio.sleep(self.sub.linger_s)
        more = await consumer.getmany(timeout_ms=0, max_records=max(1, 500 - have))
        for tp, records in more.items():
            batches.setdefault(tp, []).extend(records)

    async def _all_partitions(self, consumer: Any, batches: dict[Any, list[Any]]) -> None:
        """The fetch's records, partition after partition, in batches of `batch`; offsets committed together.
        A batch that must be redelivered rewinds every partition to its first record not yet handled."""
        owners = [tp for tp, records in batches.items() for _ in records]
        incoming = [record for tp, records in batches.items() for record in self._incoming(tp, records)]
        done: dict[Any, int] = {}
        size = self.sub.batch
        for start in range(0, len(incoming), size):
            chunk = incoming[start : start + size]
            try:
                await self.dispatcher.process_batch(chunk)
            except RetryLater as exc:
                log.warning(
                    "will redeliver %d records from %s: %s", len(incoming) - start, chunk[0].topic, exc
                )
                first: dict[Any, int] = {}
                for tp, record in zip(owners[start:], incoming[start:], strict=True):
                    first.setdefault(tp, record.offset)
                for tp, offset in first.items():
                    consumer.seek(tp, offset)
                await asyncio.sleep(1.0)
                break
            for tp, record in zip(owners[start : start + size], chunk, strict=True):
                done[tp] = record.offset
        await self._commit(consumer, done)

    async def _partition(self, consumer: Any, tp: Any, records: list[Any]) -> tuple[Any, int | None]:
        """Handles a partition's records; returns the offset of the last one handled (None: none was)."""
        topic = self.bus.logical(tp.topic)
        done: int | None = None
        incoming = self._incoming(tp, records)
        size = max(1, self.sub.batch)
        for start in range(0, len(incoming), size):
            chunk = incoming[start : start + size]
            try:
                await self.dispatcher.process_batch(chunk)
            except RetryLater as exc:
                log.warning("will redeliver %s/%d@%d: %s", topic, tp.partition, chunk[0].offset, exc)
                consumer.seek(tp, chunk[0].offset)
                await asyncio.sleep(1.0)
                break
            done = chunk[-1].offset
        return tp, done

    def _incoming(self, tp: Any, records: list[Any]) -> list[IncomingRecord]:
        """A partition's fetched records as the dispatcher takes them."""
        topic = self.bus.logical(tp.topic)
        return [
            IncomingRecord(topic, m.partition, m.offset, m.key, m.value or b"", tuple(m.headers or ()))
            for m in records
        ]

    async def _commit(self, consumer: Any, done: dict[Any, int]) -> None:
        from aiokafka.errors import CommitFailedError, KafkaError
        from aiokafka.structs import OffsetAndMetadata

        if not done:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset + 1, "") for tp, offset in done.items()})
        except (CommitFailedError, KafkaError) as exc:
            # Partitions moved to another member during a rebalance: they will redeliver; the inbox absorbs it.
            log.warning("offset commit for %s failed (%s); records will be redelivered", sorted(done), exc)
        for tp, offset in done.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(
                    self.sub.service, self.bus.logical(tp.topic), str(tp.partition)
                ).set(max(0, highwater - offset - 1))


class _RevokeListener(ConsumerRebalanceListener):
    """Waits for the batch in flight before partitions move, so its offsets are committed by their owner."""

    def __init__(self, idle: asyncio.Event) -> None:
        self._idle = idle

    async def on_partitions_revoked(self, revoked: Any) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await self._idle.wait()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def make_bus(settings: Any) -> Bus:
    """The bus the settings name; the only place that chooses."""
    if settings.bus == "kafka":
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            client_id=settings.service,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions,
            replication_factor=getattr(settings, "kafka_replication_factor", 1),
            create_topics=settings.kafka_create_topics,
            publish_timeout_s=settings.kafka_publish_timeout_s,
            request_timeout_ms=settings.kafka_request_timeout_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_min_bytes=settings.kafka_fetch_min_bytes,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )
    return InMemoryBus()
