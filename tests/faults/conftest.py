"""Fixtures of the fault tests: a city of the four service processes on a broker and a PostgreSQL of the
module's own (killed, stopped, paused and restarted by the tests), and readers of topics and databases that
the tests assert on.

Every wait is bounded; every process a fixture starts, it stops.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.testing import ANY_HOUR, listen_ports
from lastmile.sim.distributed import MODULES, Stack

BERLIN = ZoneInfo("Europe/Berlin")
HERE = Path(__file__).parent
DRIVER = HERE / "driver.py"

# Short client timeouts: a broker killed or paused is noticed in seconds, not in the production defaults' minute.
FAST_CLIENTS = {
    "LASTMILE_KAFKA_REQUEST_TIMEOUT_MS": "5000",
    "LASTMILE_KAFKA_SESSION_TIMEOUT_MS": "6000",  # the broker's group.min.session.timeout.ms
    "LASTMILE_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "LASTMILE_KAFKA_PUBLISH_TIMEOUT_S": "8",
    "LASTMILE_OUTBOX_POLL_SECONDS": "0.2",
}


# ---------------------------------------------------------------------------------------------------------
# Reading what the tests assert on: topics (from offset zero, without a group) and consumer groups' offsets


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def envelope(self) -> ev.Envelope:
        return ev.Envelope.from_bytes(self.value)

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)


async def _assigned(bootstrap: str, topic: str) -> Any:
    """A group-less consumer of every partition of `topic` (given to the constructor: aiokafka then assigns
    them all once it has the topic's metadata)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=5000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while not consumer.assignment():
                await asyncio.sleep(0.1)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Record]:
    """Every record of `topic` now, in (partition, offset) order."""
    consumer = await _assigned(bootstrap, topic)
    found: list[Record] = []
    try:
        async with asyncio.timeout(timeout):
            tps = sorted(consumer.assignment())
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                    found += [
                        Record(tp.topic, m.partition, m.offset, m.key, m.value or b"", tuple(m.headers or ()))
                        for m in messages
                        if m.offset < ends[tp]
                    ]
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: (r.partition, r.offset))


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = await _assigned(bootstrap, topic)
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(list(consumer.assignment())), 15)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on `topic`, by partition (absent: nothing committed)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), 15)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


async def produce(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Raw records (topic, key, value, headers), acknowledged by the broker (acks=all)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers or None)
            for topic, key, value, headers in records
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, names: list[str], partitions: int = 6) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(n, partitions, 1) for n in names]), 30)
    finally:
        await admin.close()


def per_key_order_kept(
    records: list[Record],
    key: Callable[[dict[str, Any]], str],
    version: Callable[[dict[str, Any]], int | None],
) -> dict[str, list[int]]:
    """Each entity's versions in topic order; those whose versions ever go down (a broken per-key order).

    An event published again (the relay's at-least-once: a batch re-sent after a lost ack) is the same event
    under the same id, which consumers' inboxes drop: each event counts where it first appears."""
    seen: dict[str, list[int]] = {}
    ids: set[str] = set()
    for r in records:
        envelope = r.envelope()
        if str(envelope.id) in ids:
            continue
        ids.add(str(envelope.id))
        data = envelope.data
        v = version(data)
        if v is not None:
            seen.setdefault(key(data), []).append(v)
    return {k: versions for k, versions in seen.items() if versions != sorted(versions)}


async def rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """A query on a service's database (SQLAlchemy URL) with asyncpg: what the tests assert on."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def wait_for(
    probe: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.5
) -> Any:
    """`probe` until it returns something truthy; its errors (a server restarting) count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.wait_for(probe(), max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


# ---------------------------------------------------------------------------------------------------------
# The city: four service processes on the module's own broker and PostgreSQL


@dataclass
class City:
    infra: Any
    stack: Stack
    merchant_key: str
    depot_id: str
    outbox_dir: Path
    accepted: dict[str, str] = field(default_factory=dict)  # order id → reference
    versions: dict[str, int] = field(default_factory=dict)  # order id → the version the merchant last got

    @property
    def merchant(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.merchant_key}"}

    def db(self, service: str) -> str:
        return self.stack.databases[service]

    async def query(self, service: str, sql: str) -> list[asyncpg.Record]:
        return await rows(self.db(service), sql)

    def topic(self, name: str) -> str:
        return self.stack.topic_prefix + name

    def order_body(self, reference: str) -> dict[str, Any]:
        day = datetime.now(BERLIN).date() + timedelta(days=1)
        rnd = secrets.randbelow(1000) / 100000
        return {
            "reference": reference,
            "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
            "destination": {"lat": 52.515 + rnd, "lon": 13.395 + rnd},
            "time_windows": [
                {
                    "start": datetime.combine(day, clock_time(9), BERLIN).isoformat(),
                    "end": datetime.combine(day, clock_time(19), BERLIN).isoformat(),
                }
            ],
            "parcels": [{"count": 1, "weight_kg": 1.0}],
        }

    async def post_order(self, http: httpx.AsyncClient, reference: str) -> httpx.Response:
        key = {"Idempotency-Key": f"idem-{reference}"}
        reply = await http.post(
            self.stack.url("order-intake") + "/v1/orders",
            json=self.order_body(reference),
            headers={**self.merchant, **key},
        )
        if reply.status_code == 201:
            order = reply.json()
            self.accepted[order["id"]] = reference
            self.versions[order["id"]] = order.get("version", 1)
        return reply

    async def rename(self, http: httpx.AsyncClient, order_id: str, name: str) -> httpx.Response:
        reply = await http.patch(
            f"{self.stack.url('order-intake')}/v1/orders/{order_id}",
            json={"recipient": {"name": name, "phone": "+447700900123", "email": "ada@example.com"}},
            headers=self.merchant,
        )
        if reply.status_code == 200:
            self.versions[order_id] = reply.json()["version"]
        return reply

    # -- the guarantee every broker scenario asserts ---------------------------------------------------

    async def settled(self, orders: list[str], timeout: float = 120.0) -> None:
        """Every order reached its true end state in every service, at the version the merchant last saw;
        no outbox row is stuck; nothing was sent twice; per-key order was kept on the topics."""
        wanted = {o: self.versions[o] for o in orders}

        async def all_there() -> bool:
            intake = {
                r["id"]: (r["status"], r["version"])
                for r in await rows(self.db("order-intake"), "SELECT id, status, version FROM orders")
            }
            planner = {
                r["order_id"]: (r["status"], r["version"])
                for r in await rows(self.db("planner"), "SELECT order_id, status, version FROM jobs")
            }
            tracker = {
                r["order_id"]: r["version"]
                for r in await rows(
                    self.db("tracker"),
                    "SELECT t.order_id, t.version FROM tracking t JOIN stops s ON s.order_id = t.order_id",
                )
            }
            contacts = {
                r["order_id"]: (r["status"], r["version"])
                for r in await rows(self.db("notifier"), "SELECT order_id, status, version FROM contacts")
            }
            sent = {
                (r["order_id"], r["channel"])
                for r in await rows(
                    self.db("notifier"),
                    "SELECT order_id, channel FROM notifications WHERE kind = 'scheduled' AND status = 'sent'",
                )
            }
            return all(
                intake.get(o) == ("scheduled", v)
                and planner.get(o) == ("planned", v)
                and tracker.get(o) == v
                and contacts.get(o) == ("scheduled", v)
                and {(o, "sms"), (o, "email")} <= sent
                for o, v in wanted.items()
            )

        await wait_for(all_there, timeout, f"{len(orders)} orders scheduled everywhere", interval=1.0)
        await self.assert_offsets_only_past_stored()
        await self.assert_nothing_twice()
        await self.assert_outboxes_empty()
        await self.assert_per_key_order()

    async def assert_offsets_only_past_stored(self) -> None:
        """A consumer group's committed offset never passes an event its service has not stored: every event
        below it (of the types the service handles) is in the service's inbox. Offsets first, inbox second:
        the consume loop commits an offset only after the transaction that recorded the event committed."""
        handled = {
            "orders.v1": ({"planner", "tracker", "notifier"}, {ev.OrderCreated.TYPE, ev.OrderUpdated.TYPE}),
            "deliveries.v1": ({"order-intake", "notifier"}, {ev.DeliveryScheduled.TYPE}),
        }
        for topic, (services, types) in handled.items():
            records = await read_topic(self.infra.bootstrap, self.topic(topic))
            for service in services:
                offsets = await committed(self.infra.bootstrap, self.topic(service), self.topic(topic))
                passed = {
                    str(r.envelope().id)
                    for r in records
                    if r.offset < offsets.get(r.partition, 0) and r.envelope().type in types
                }
                inbox = {
                    r["event_id"]
                    for r in await self.query(
                        service,
                        f"SELECT event_id FROM inbox WHERE consumer = '{service}'",  # noqa: S608
                    )
                }
                missing = passed - inbox
                assert not missing, f"{service} committed offsets past {len(missing)} unstored events"

    async def assert_nothing_twice(self) -> None:
        messages = await rows(
            self.db("notifier"), "SELECT id, order_id, channel, kind, dedupe, status FROM notifications"
        )
        identities = [(m["order_id"], m["channel"], m["kind"], m["dedupe"]) for m in messages]
        assert len(identities) == len(set(identities))
        # One 'scheduled' message per order and channel: a plan that did not change tells nobody anything.
        scheduled = [(m["order_id"], m["channel"]) for m in messages if m["kind"] == "scheduled"]
        assert len(scheduled) == len(set(scheduled)), "a customer was told twice that the order is scheduled"
        sent_ids = {m["id"] for m in messages if m["status"] == "sent"}
        files = {p.stem for p in self.outbox_dir.glob("*.json")}
        assert files == sent_ids  # the file outbox holds exactly the messages sent, each once

    async def assert_outboxes_empty(self, timeout: float = 30.0) -> None:
        async def empty() -> bool:
            counts = [(await rows(self.db(s), "SELECT count(*) AS n FROM outbox"))[0]["n"] for s in MODULES]
            return all(n == 0 for n in counts)

        await wait_for(empty, timeout, "every service's outbox relayed")

    async def assert_per_key_order(self) -> None:
        bootstrap = self.infra.bootstrap
        orders = await read_topic(bootstrap, self.topic("orders.v1"))
        assert per_key_order_kept(orders, lambda d: d["order_id"], lambda d: d.get("version")) == {}
        deliveries = await read_topic(bootstrap, self.topic("deliveries.v1"))
        by_route = per_key_order_kept(
            deliveries, lambda d: f"{d['order_id']}@{d.get('route_id')}", lambda d: d.get("route_version")
        )
        assert by_route == {}
        routes = await read_topic(bootstrap, self.topic("routes.v1"))
        assert per_key_order_kept(routes, lambda d: d["route_id"], lambda d: d.get("version")) == {}
        # Every accepted order is on the topic, and nothing else is (no event without its row).
        created = {r.envelope().data["order_id"] for r in orders if r.envelope().type == ev.OrderCreated.TYPE}
        in_db = {r["id"] for r in await rows(self.db("order-intake"), "SELECT id FROM orders")}
        assert created == in_db
        assert set(self.accepted) <= created


def _start_city(infra: Any, logs: Path) -> City:
    async def build() -> City:
        databases = {service: await infra.database(service.replace("-", "_")) for service in MODULES}
        stack = Stack(
            kafka_bootstrap=infra.bootstrap,
            topic_prefix="city.",
            databases=databases,
            ports={service: listen_ports() for service in MODULES},
            ops_token="lm_ops_" + secrets.token_urlsafe(24),
            logs=logs,
            extra_env={
                **FAST_CLIENTS,
                **ANY_HOUR,
                "LASTMILE_LOG_LEVEL": "WARNING",
            },
        )
        try:
            await stack.start_all(timeout=120)
            ops = {"Authorization": f"Bearer {stack.ops_token}"}
            async with httpx.AsyncClient(timeout=10) as http:

                async def post(service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
                    reply = await http.post(stack.url(service) + path, json=body, headers=ops)
                    assert reply.status_code in (200, 201), reply.text
                    result: dict[str, Any] = reply.json()
                    return result

                depot = await post("planner", "/v1/depots", {"name": "Mitte", "lat": 52.52, "lon": 13.40})
                for _ in range(3):
                    await post(
                        "planner",
                        "/v1/vehicles",
                        {"depot_id": depot["id"], "shift_start": "07:00", "shift_end": "21:00"},
                    )
                merchant = await post("order-intake", "/v1/merchants", {"name": "Acme"})
                city = City(infra, stack, merchant["api_key"], depot["id"], logs / "outbox")

                async def depot_known() -> bool:  # order intake learns of depots through depots.v1
                    reply = await city.post_order(http, f"warmup-{secrets.token_hex(3)}")
                    return reply.status_code == 201

                await wait_for(depot_known, 60, "order intake knows the depot")
            return city
        except BaseException:
            stack.stop_all()
            raise

    return asyncio.run(build())


@pytest.fixture(scope="module")
def city(own_infra_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    """The four services as processes on the module's own broker and PostgreSQL, with a depot, three vans and
    a merchant; the broker and PostgreSQL are the tests' to break (each test leaves them running)."""
    city = _start_city(own_infra_module, tmp_path_factory.mktemp("city"))
    try:
        yield city
    finally:
        city.stack.stop_all()


# ---------------------------------------------------------------------------------------------------------
# Consumers and relays as child processes the tests SIGKILL at a point of their choosing (driver.py)


@dataclass
class Driver:
    """`tests/faults/driver.py` as a child process: the real Dispatcher (KafkaBus consumer) or OutboxRelay."""

    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Driver:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(DRIVER), *self.args], stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM (a clean stop), then SIGKILL if it lingers."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    async def exited(self, timeout: float) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"driver still running after {timeout} s; see {self.log}")
            await asyncio.sleep(0.1)
        return self.process.returncode

    def outcomes(self) -> dict[str, int]:
        """What the driver counted (handled, duplicate, ...), written when it stopped cleanly."""
        path = self.log.with_suffix(".outcomes.json")
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def drivers(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """A factory of driver processes; whatever is still running at the end is killed."""
    started: list[Driver] = []

    def make(name: str, *args: str) -> Driver:
        log = tmp_path / f"{name}.log"
        driver = Driver([*args, "--outcomes", str(log.with_suffix(".outcomes.json"))], log)
        started.append(driver)
        return driver

    yield make
    for driver in started:
        driver.kill()


@pytest.fixture
def faults_helpers() -> SimpleNamespace:
    """This conftest's helpers for the test modules (which cannot import each other or this file)."""
    return SimpleNamespace(
        read_topic=read_topic,
        end_offsets=end_offsets,
        committed=committed,
        produce=produce,
        create_topics=create_topics,
        rows=rows,
        wait_for=wait_for,
        per_key_order_kept=per_key_order_kept,
        Setup=SimpleNamespace,
    )
