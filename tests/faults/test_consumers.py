"""A consumer killed before and after its database commit, the outbox relay killed after the broker's ack, and
a rebalance storm: each redelivery meets the inbox, so every event has exactly one effect.

The consumers and the relay are child processes (`driver.py`) running lastmile.common's KafkaBus, Dispatcher
and OutboxRelay, SIGKILLed at the point each test names. Only clients die here, so the shared broker and
PostgreSQL serve (each test under its own topic prefix and database).
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lastmile.common import events as ev

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)  # driver.py's: an event's seq is its `at` in seconds after T0


def arrived(key: str, seq: int) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    payload = ev.Arrived(order_id=key, vehicle_id="v1", at=T0 + timedelta(seconds=seq))
    return ("deliveries.v1", key.encode(), payload.envelope("faults").to_bytes(), [])


async def effects(rows: Any, url: str) -> list[Any]:
    return await rows(url, "SELECT key, seq, event_id, pid FROM effects ORDER BY id")


@pytest.fixture
async def setup(kafka: Any, postgres: Any, drivers: Any, faults_helpers: Any) -> Any:
    url = await postgres("faults")
    topic = kafka.prefix + "deliveries.v1"
    await faults_helpers.create_topics(kafka.bootstrap, [topic, topic + ".dlq"])
    init = drivers("init", "init", "--db", url).start()
    assert await init.exited(60) == 0

    def consumer(name: str, *extra: str) -> Any:
        return drivers(
            name, "consume", "--bootstrap", kafka.bootstrap, "--prefix", kafka.prefix, "--db", url, *extra
        )

    def relay(name: str, *extra: str) -> Any:
        return drivers(
            name, "relay", "--bootstrap", kafka.bootstrap, "--prefix", kafka.prefix, "--db", url, *extra
        )

    async def produce(records: list[Any]) -> None:
        await faults_helpers.produce(kafka.bootstrap, [(kafka.prefix + t, k, v, h) for t, k, v, h in records])

    return faults_helpers.Setup(
        url=url, kafka=kafka, consumer=consumer, relay=relay, produce=produce, drivers=drivers
    )


async def all_effects(h: Any, url: str, count: int, timeout: float = 60) -> list[Any]:
    async def done() -> list[Any] | None:
        found = await effects(h.rows, url)
        return found if len({e["event_id"] for e in found}) >= count else None

    return await h.wait_for(done, timeout, f"{count} events handled")


async def test_consumer_killed_before_its_commit_rolls_back_and_the_event_is_redelivered_once(
    setup: Any, faults_helpers: Any
) -> None:
    h = faults_helpers
    await setup.produce([arrived("ord_a", seq) for seq in range(1, 21)])
    first = setup.consumer("first", "--die", "before-commit", "--at", "8").start()
    assert await first.exited(60) == -signal.SIGKILL
    handled = await effects(h.rows, setup.url)
    # The 8th event's insert was flushed, not committed: the crash rolled it back.
    assert [e["seq"] for e in handled] == list(range(1, 8))

    second = setup.consumer("second").start()
    found = await all_effects(h, setup.url, 20)
    await asyncio.sleep(1.0)  # a second effect, if any, would show now
    assert second.stop() == 0
    found = await effects(h.rows, setup.url)
    assert [e["seq"] for e in found] == list(range(1, 21))  # each once, in order
    assert {e["pid"] for e in found if e["seq"] >= 8} == {second.process.pid}
    assert second.outcomes().get("handled") == 13


async def test_consumer_killed_after_its_commit_meets_the_inbox_on_redelivery(
    setup: Any, faults_helpers: Any
) -> None:
    h = faults_helpers
    await setup.produce([arrived("ord_b", seq) for seq in range(1, 21)])
    first = setup.consumer("first", "--die", "after-commit", "--at", "8").start()
    assert await first.exited(60) == -signal.SIGKILL
    assert [e["seq"] for e in await effects(h.rows, setup.url)] == list(range(1, 9))
    # Its offset was not committed: the 8th record (offset 7) will be delivered again.
    # (The loop commits once per fetched batch, so earlier records may be uncommitted too.)
    offsets = await h.committed(
        setup.kafka.bootstrap, setup.kafka.prefix + "faults", setup.kafka.prefix + "deliveries.v1"
    )
    resume_at = max(offsets.values(), default=0)
    assert resume_at <= 7

    second = setup.consumer("second").start()
    await all_effects(h, setup.url, 20)
    await asyncio.sleep(1.0)
    assert second.stop() == 0
    found = await effects(h.rows, setup.url)
    assert [e["seq"] for e in found] == list(range(1, 21))
    # Every redelivered record up to the 8th met the inbox; the rest were handled once.
    assert second.outcomes() == {"duplicate": 8 - resume_at, "handled": 12}


async def test_relay_killed_after_the_brokers_ack_publishes_again_and_the_consumer_acts_once(
    setup: Any, faults_helpers: Any
) -> None:
    h = faults_helpers
    staged = setup.drivers("stage", "stage", "--db", setup.url, "--count", "30", "--key", "ord_c").start()
    assert await staged.exited(60) == 0
    first = setup.relay("relay-1", "--die", "after-ack").start()
    assert await first.exited(60) == -signal.SIGKILL
    outbox = await h.rows(setup.url, "SELECT event_id FROM outbox ORDER BY id")
    assert len(outbox) == 30  # acknowledged by the broker, yet still in the outbox
    topic = setup.kafka.prefix + "deliveries.v1"
    once = await h.read_topic(setup.kafka.bootstrap, topic)
    assert [str(r.envelope().id) for r in once] == [r["event_id"] for r in outbox]

    second = setup.relay("relay-2").start()

    async def relayed() -> bool:
        return not await h.rows(setup.url, "SELECT 1 FROM outbox")

    await h.wait_for(relayed, 30, "outbox relayed")
    assert second.stop() == 0
    twice = await h.read_topic(setup.kafka.bootstrap, topic)
    ids = [str(r.envelope().id) for r in twice]
    assert len(ids) == 60
    assert len(set(ids)) == 30

    consumer = setup.consumer("consumer").start()
    await all_effects(h, setup.url, 30)
    await asyncio.sleep(1.0)
    assert consumer.stop() == 0
    found = await effects(h.rows, setup.url)
    assert [e["seq"] for e in found] == list(range(1, 31))  # one effect each, in order
    assert consumer.outcomes() == {"handled": 30, "duplicate": 30}


async def test_rebalance_storm_loses_nothing_and_keeps_each_keys_order(
    setup: Any, faults_helpers: Any
) -> None:
    """1,000 events on 50 keys flow while a consumer joins and another is SIGKILLed mid-batch."""
    h = faults_helpers
    keys = [f"ord_{i:02d}" for i in range(50)]
    common = ("--batch", "10", "--handle-ms", "3")
    a = setup.consumer("a", *common).start()
    b = setup.consumer("b", *common).start()

    async def flow() -> None:
        for seq in range(1, 21):  # 20 rounds of one event per key: 1,000 events over about 6 s
            await setup.produce([arrived(key, seq) for key in keys])
            await asyncio.sleep(0.3)

    producing = asyncio.create_task(flow())
    try:
        await all_effects(h, setup.url, 200, timeout=90)
        c = setup.consumer("c", *common).start()  # joins: a rebalance while records are in flight
        await all_effects(h, setup.url, 500, timeout=90)
        a.kill()  # dies mid-stream: its partitions move after the session timeout, uncommitted ones replay
        await asyncio.wait_for(producing, 60)
        await all_effects(h, setup.url, 1000, timeout=120)
        await asyncio.sleep(2.0)
    finally:
        producing.cancel()
    assert b.stop() == 0
    assert c.stop() == 0
    found = await effects(h.rows, setup.url)
    assert len(found) == 1000
    assert len({e["event_id"] for e in found}) == 1000
    by_key: dict[str, list[int]] = {}
    for e in found:
        by_key.setdefault(e["key"], []).append(e["seq"])
    assert by_key == {key: list(range(1, 21)) for key in keys}  # each key's events in the order produced
    assert {e["pid"] for e in found} >= {b.process.pid, c.process.pid}
