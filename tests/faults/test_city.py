"""The broker and PostgreSQL broken under the four services while merchants post orders.

One city (the four service processes) per module, on a broker and a PostgreSQL of the module's own: each test
breaks them, brings them back, and asserts on the databases and topics that every accepted order reached its
true end state in every service (scheduled: the planner, the tracker and the notifier consumed it, and order
intake heard back), at the version the merchant last saw (per-key order), that nothing was told twice, and
that no outbox row is stuck. The tests run in file order and each leaves the servers running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


async def orders_flow(
    city: Any, http: httpx.AsyncClient, label: str, count: int, pace_s: float = 0.15
) -> list[str]:
    """`count` orders, one every `pace_s`; every third one changed right after (a second version). Every
    request must succeed: order intake writes the order and its event in one transaction, broker or not."""
    made: list[str] = []
    for i in range(count):
        reply = await city.post_order(http, f"{label}-{i}")
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["id"])
        if i % 3 == 0:
            changed = await city.rename(http, made[-1], f"Ada {label} {i}")
            assert changed.status_code == 200, changed.text
        await asyncio.sleep(pace_s)
    return made


def infra(city: Any, what: str, action: str) -> Awaitable[None]:
    run = city.infra.kafka if what == "kafka" else city.infra.pg
    return asyncio.to_thread(run, action)


async def while_orders_flow(
    city: Any, label: str, what: str, down: str, up: str, down_s: float, pace_s: float = 0.15
) -> list[str]:
    """30 orders flow while `what` (kafka | pg) is taken `down` a second in, and brought `up` `down_s` later,
    whatever happens to the flow (the module's next tests need the server)."""

    async def fault() -> None:
        await asyncio.sleep(1.0)
        await infra(city, what, down)
        try:
            await asyncio.sleep(down_s)
        finally:
            await infra(city, what, up)

    async with httpx.AsyncClient(timeout=15) as http, asyncio.TaskGroup() as group:
        flow = group.create_task(orders_flow(city, http, label, 30, pace_s))
        group.create_task(fault())
    return flow.result()


async def test_broker_killed_and_restarted_while_orders_flow(city: Any) -> None:
    # SIGKILL: no clean shutdown, nothing flushed; back 5 s later
    await city.settled(await while_orders_flow(city, "kill", "kafka", "kill", "start", 5.0))


async def test_broker_stopped_cleanly_and_restarted_while_orders_flow(city: Any) -> None:
    # SIGTERM: a controlled shutdown; back 3 s later
    await city.settled(await while_orders_flow(city, "term", "kafka", "stop", "start", 3.0))


async def test_broker_paused_past_the_clients_timeouts_then_resumed(city: Any) -> None:
    """SIGSTOP for longer than the clients' request (5 s) and session (6 s) timeouts: producers time out and
    retry, consumer groups lose their members and rebalance when it resumes."""
    await city.settled(await while_orders_flow(city, "pause", "kafka", "pause", "resume", 10.0, pace_s=0.3))


async def test_orders_posted_while_the_broker_is_down_are_accepted_and_flow_when_it_is_back(
    city: Any,
) -> None:
    await infra(city, "kafka", "kill")
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            made = await orders_flow(city, http, "down", 15, pace_s=0.05)
        # Accepted with the broker down: each order waits in the outbox beside its row.
        waiting = await city_rows(city, "order-intake", "SELECT count(*) AS n FROM outbox")
        assert waiting[0]["n"] >= len(made)
    finally:
        await infra(city, "kafka", "start")
    await city.settled(made)


async def city_rows(city: Any, service: str, query: str) -> list[Any]:
    return await city.query(service, query)


async def test_postgres_restarted_under_load(city: Any) -> None:
    """Requests made while PostgreSQL is away fail cleanly (problem+json 503, nothing stored), the merchant's
    retry with the same Idempotency-Key lands once; consumers commit no offset for what they could not store
    and catch up afterwards."""
    answers: list[tuple[int, str]] = []
    made: list[str] = []

    async def post_until_stored(http: httpx.AsyncClient, reference: str) -> str:
        deadline = time.monotonic() + 90
        while True:
            try:
                reply = await city.post_order(http, reference)
            except httpx.TransportError as exc:  # the service itself must stay up
                raise AssertionError(f"order intake did not answer: {exc!r}") from exc
            answers.append((reply.status_code, reply.headers.get("content-type", "")))
            if reply.status_code == 201:
                return str(reply.json()["id"])
            assert reply.status_code == 503, reply.text
            assert reply.headers["content-type"] == "application/problem+json"
            assert reply.json()["status"] == 503
            assert time.monotonic() < deadline, "PostgreSQL back, yet orders still refused"
            await asyncio.sleep(0.3)

    async def load(http: httpx.AsyncClient) -> None:
        for i in range(40):
            made.append(await post_until_stored(http, f"pg-{i}"))
            await asyncio.sleep(0.1)

    async def fault() -> None:
        await asyncio.sleep(1.5)
        await infra(city, "pg", "kill")  # immediate shutdown: connections cut mid-transaction
        try:
            await asyncio.sleep(4.0)
        finally:
            await infra(city, "pg", "start")

    async with httpx.AsyncClient(timeout=20) as http, asyncio.TaskGroup() as group:
        group.create_task(load(http))
        group.create_task(fault())
    await city.assert_offsets_only_past_stored()  # while the consumers catch up
    assert any(status == 503 for status, _ in answers), "the restart was not noticed: the test proves nothing"
    assert {status for status, _ in answers} <= {201, 503}
    await city.settled(made)
    # Each reference once: a 503 stored nothing, and the retry with the same Idempotency-Key stored it once.
    refs = [r["reference"] for r in await city_rows(city, "order-intake", "SELECT reference FROM orders")]
    assert sorted(r for r in refs if r.startswith("pg-")) == sorted(f"pg-{i}" for i in range(40))


async def test_replaying_the_topics_from_offset_zero_changes_nothing_and_sends_nothing(
    city: Any, faults_helpers: Any
) -> None:
    """Every record of orders.v1 and deliveries.v1 produced again (same ids), plus an order's older version
    under a new id (a stale event): no state changes, no message is sent, no event is published."""
    h = faults_helpers
    bootstrap = city.infra.bootstrap
    async with httpx.AsyncClient(timeout=15) as http:  # history of its own: orders, one of them changed
        await city.settled(await orders_flow(city, http, "replay", 4, pace_s=0.05))

    async def snapshot() -> dict[str, Any]:
        state = {
            "intake": "SELECT id, status, version, snapshot FROM orders ORDER BY id",
            "planner": "SELECT order_id, status, version, vehicle_id, route_id FROM jobs ORDER BY order_id",
            "tracker": "SELECT order_id, route_id, status, planned_arrival FROM stops ORDER BY order_id",
            "notifier": "SELECT order_id, status, version, recipient FROM contacts ORDER BY order_id",
            "messages": "SELECT id, status, attempts, sent_at FROM notifications ORDER BY id",
        }
        service = {"intake": "order-intake", "messages": "notifier"}
        found: dict[str, Any] = {
            name: [tuple(r.values()) for r in await city_rows(city, service.get(name, name), query)]
            for name, query in state.items()
        }
        found["files"] = sorted((p.name, p.stat().st_mtime_ns) for p in city.outbox_dir.glob("*.json"))
        for topic in ("deliveries.v1", "routes.v1", "notifications.v1", "orders.v1"):
            found[topic] = await h.end_offsets(bootstrap, city.topic(topic))
        return found

    await city.assert_outboxes_empty()
    before = await snapshot()
    orders = await h.read_topic(bootstrap, city.topic("orders.v1"))
    deliveries = await h.read_topic(bootstrap, city.topic("deliveries.v1"))
    changed = next(r for r in orders if r.envelope().type == ev.OrderUpdated.TYPE)
    first = next(
        r
        for r in orders
        if r.envelope().type == ev.OrderCreated.TYPE
        and r.envelope().data["order_id"] == changed.envelope().data["order_id"]
    )
    stale = json.loads(first.value)
    stale["id"] = "00000000-0000-4000-8000-000000000001"  # a new event carrying version 1 after version 2
    replay = [(r.topic, r.key, r.value, list(r.headers)) for r in [*orders, *deliveries]]
    replay.append((first.topic, first.key, json.dumps(stale).encode(), []))
    await h.produce(bootstrap, replay)

    groups = {
        "orders.v1": ("planner", "tracker", "notifier"),
        "deliveries.v1": ("order-intake", "planner", "notifier"),
    }

    async def consumed() -> bool:
        for topic, services in groups.items():
            ends = await h.end_offsets(bootstrap, city.topic(topic))
            for service in services:
                done = await h.committed(bootstrap, city.topic(service), city.topic(topic))
                if any(done.get(p, 0) < end for p, end in ends.items()):
                    return False
        return True

    await h.wait_for(consumed, 60, "every consumer group through the replayed records")
    await asyncio.sleep(2.0)  # what a replay would wrongly set off (messages, events) shows by now
    await city.assert_outboxes_empty()
    after = await snapshot()
    for topic in ("orders.v1", "deliveries.v1"):  # exactly what was produced again, nothing more
        grew = sum(after[topic].values()) - sum(before[topic].values())
        assert grew == sum(1 for t, *_ in replay if t == city.topic(topic))
        after[topic] = before[topic]
    assert after == before
    await city.assert_nothing_twice()
