"""On real PostgreSQL and Kafka: an accepted order is on orders.v1 exactly once, an idempotent replay creates
nothing, and an order committed by a process killed before its relay published is published once it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import KafkaBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish, random_ref
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings

pytestmark = pytest.mark.integration

DEPOT = ev.DepotUpserted(
    depot_id="dep_berlin",
    name="Berlin Mitte",
    location=ev.GeoPoint(lat=52.52, lon=13.40),
    timezone="Europe/Berlin",
    service_radius_km=15,
)


def an_order() -> dict[str, Any]:
    return {
        "reference": random_ref("D"),
        "recipient": {"name": "Ada Lovelace", "phone": "+447700900123"},
        "destination": {"lat": 52.5208, "lon": 13.4095},
        "service_level": "next_day",
    }


async def orders_on_topic(bootstrap: str, prefix: str, quiet_s: float = 2.0) -> list[ev.Envelope]:
    """Everything on orders.v1 from the beginning, read until nothing new arrives for `quiet_s`."""
    from aiokafka import AIOKafkaConsumer

    # No group: the consumer takes every partition of the topic, from the beginning.
    consumer = AIOKafkaConsumer(
        prefix + "orders.v1",
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
        found: list[ev.Envelope] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [ev.Envelope.from_bytes(r.value) for r in records if r.value]
                last = time.monotonic()
        return found
    finally:
        await consumer.stop()


async def count_rows(url: str, table: str) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (a fixed table name)
    finally:
        await conn.close()


async def test_an_accepted_order_is_published_once_and_a_replay_creates_nothing(
    kafka: Any, postgres: Any
) -> None:
    url = await postgres("intake")
    bus = KafkaBus(kafka.bootstrap, client_id="test", topic_prefix=kafka.prefix)
    await bus.start()
    settings = IntakeSettings(
        database_url=url, bus="kafka", kafka_bootstrap_servers=kafka.bootstrap,
        kafka_topic_prefix=kafka.prefix, ops_token=TEST_OPS_TOKEN,
    )  # fmt: skip
    try:
        async with app_client(create_app(settings, bus=bus)) as client:
            await publish(bus, DEPOT)
            merchant = (
                await client.post("/v1/merchants", json={"name": "Acme"}, headers=ops_headers())
            ).json()
            headers = {"Authorization": f"Bearer {merchant['api_key']}", "Idempotency-Key": "once"}
            body = an_order()

            async def created() -> httpx.Response | None:
                reply = await client.post("/v1/orders", json=body, headers=headers)
                return reply if reply.status_code == 201 else None

            first = await eventually(created, timeout=30, interval=0.3)  # once depots.v1 has reached us
            replays = [await client.post("/v1/orders", json=body, headers=headers) for _ in range(3)]
            assert {r.content for r in replays} == {first.content}
            assert all(r.headers["idempotent-replayed"] == "true" for r in replays)
            await eventually(lambda: _outbox_empty(url), timeout=30)
    finally:
        await bus.stop()
    order_id = first.json()["id"]
    events = [e for e in await orders_on_topic(kafka.bootstrap, kafka.prefix) if e.subject == order_id]
    assert [e.type for e in events] == ["lastmile.order.created"]
    assert await count_rows(url, "orders") == 1


async def _outbox_empty(url: str) -> bool:
    return await count_rows(url, "outbox") == 0


class Service:
    """order-intake as its own process, as the distributed mode runs it."""

    def __init__(self, database_url: str, prefix: str, port: int, logs: Path) -> None:
        self.database_url, self.prefix, self.port, self.logs = database_url, prefix, port, logs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, bootstrap: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASTMILE_")}
        env.update(
            LASTMILE_BUS="kafka", LASTMILE_KAFKA_BOOTSTRAP_SERVERS=bootstrap, LASTMILE_KAFKA_TOPIC_PREFIX=self.prefix,
            LASTMILE_DATABASE_URL=self.database_url, LASTMILE_PORT=str(self.port), LASTMILE_OPS_TOKEN=TEST_OPS_TOKEN,
            LASTMILE_LOG_FORMAT="text",
        )  # fmt: skip
        log = open(self.logs, "ab")  # noqa: SIM115 (the child process writes to it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lastmile.order_intake"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

        async def healthy() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.logs.read_text()[-3000:]
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(self.url + "/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, timeout=60, interval=0.2)

    def stop(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@asynccontextmanager
async def service(url: str, prefix: str, port: int, logs: Path) -> AsyncIterator[Service]:
    running = Service(url, prefix, port, logs)
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)


@pytest.mark.timeout(240)
async def test_the_relay_publishes_what_a_killed_process_committed(
    kafka: Any, postgres: Any, free_port: Any, tmp_path: Path
) -> None:
    url = await postgres("intake")
    bus = KafkaBus(kafka.bootstrap, client_id="test", topic_prefix=kafka.prefix)
    await bus.start()
    try:
        await publish(bus, DEPOT)
    finally:
        await bus.stop()
    async with (
        service(url, kafka.prefix, free_port(), tmp_path / "intake.log") as intake,
        httpx.AsyncClient(timeout=10) as http,
    ):
        # 1. Up with the broker: learn the depot, register a merchant.
        await intake.start(kafka.bootstrap)
        merchant = (
            await http.post(intake.url + "/v1/merchants", json={"name": "Acme"}, headers=ops_headers())
        ).json()
        headers = {"Authorization": f"Bearer {merchant['api_key']}", "Idempotency-Key": "crash-1"}
        await eventually(lambda: _knows_depot(url), timeout=30)
        await eventually(lambda: _outbox_empty(url), timeout=30)
        intake.stop(signal.SIGTERM)

        # 2. Restarted against a broker address where nothing listens: the relay cannot publish. The order and
        #    its event commit; the process is killed right after the 201, before any publish could happen.
        await intake.start(f"127.0.0.1:{free_port()}")
        body = an_order()
        accepted = await http.post(intake.url + "/v1/orders", json=body, headers=headers)
        assert accepted.status_code == 201, accepted.text
        intake.stop(signal.SIGKILL)
        order_id = accepted.json()["id"]
        assert await count_rows(url, "outbox") == 1
        assert [
            e for e in await orders_on_topic(kafka.bootstrap, kafka.prefix, 1.0) if e.subject == order_id
        ] == []

        # 3. Back with the broker: the relay publishes the committed event; a retry of the request replays.
        await intake.start(kafka.bootstrap)
        await eventually(lambda: _outbox_empty(url), timeout=60, interval=0.3)
        retry = await http.post(intake.url + "/v1/orders", json=body, headers=headers)
        assert (retry.status_code, retry.content) == (201, accepted.content)
        assert retry.headers["idempotent-replayed"] == "true"
    published = Counter(
        e.type for e in await orders_on_topic(kafka.bootstrap, kafka.prefix) if e.subject == order_id
    )
    assert published == {"lastmile.order.created": 1}
    assert await count_rows(url, "orders") == 1


async def _knows_depot(url: str) -> bool:
    return await count_rows(url, "depots") == 1
