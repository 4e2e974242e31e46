"""What every bus promises: per-key order, one delivery per group, redelivery, dead letters, no double effect.

Each test runs on the InMemoryBus and, as an integration test, on the real Kafka broker.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from lastmile.common import events as ev
from lastmile.common.bus import OutgoingRecord
from lastmile.common.testing import eventually, publish

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def eta(order: str, n: int) -> ev.EtaChanged:
    return ev.EtaChanged(
        order_id=order, vehicle_id="veh_1", eta=T0 + timedelta(minutes=n), at=T0, stops_before=n
    )


async def wait_for(seen: list[Any], count: int, timeout: float = 60.0) -> None:
    await eventually(lambda: len(seen) >= count, timeout=timeout)


class TestOrderAndGroups:
    async def test_keeps_per_key_order_and_delivers_once_per_group(self, harness: Any) -> None:
        seen: dict[str, list[tuple[str, int]]] = {"g1": [], "g2": []}

        def recorder(group: str) -> Any:
            async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
                seen[group].append((event.order_id, event.stops_before))

            return handle

        harness.subscribe({ev.EtaChanged: recorder("g1")}, group="g1")
        harness.subscribe({ev.EtaChanged: recorder("g2")}, group="g2")
        keys = [f"ord_{k}" for k in range(5)]
        for n in range(40):
            for key in keys:
                await publish(harness.bus, eta(key, n))
        for group in ("g1", "g2"):
            await wait_for(seen[group], 200)
            await asyncio.sleep(0.2)
            assert len(seen[group]) == 200, f"{group} got duplicates or lost events"
            for key in keys:
                assert [n for k, n in seen[group] if k == key] == list(range(40))


class TestFailures:
    async def test_redelivers_while_the_database_is_away_then_handles_once(self, harness: Any) -> None:
        seen: list[int] = []
        failures = {"left": 3}

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            if event.stops_before == 1 and failures["left"] > 0:
                failures["left"] -= 1
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database restarting"))
            seen.append(event.stops_before)

        harness.subscribe({ev.EtaChanged: handle})
        for n in range(4):
            await publish(harness.bus, eta("ord_same", n))
        await wait_for(seen, 4)
        assert seen == [0, 1, 2, 3]
        assert failures["left"] == 0

    async def test_dead_letters_poison_and_keeps_the_partition_moving(self, harness: Any) -> None:
        seen: list[int] = []

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            seen.append(event.stops_before)

        harness.subscribe({ev.EtaChanged: handle}, max_event_bytes=10_000)
        good = eta("ord_p", 7).envelope("test")
        schema_violation = good.model_copy(update={"data": {"order_id": "ord_p", "eta": "not a time"}})
        unknown = good.model_copy(update={"type": "lastmile.made.up"})
        poison = [
            b"{not json",
            schema_violation.to_bytes(),
            unknown.to_bytes(),
            good.model_copy(update={"data": {**good.data, "pad": "x" * 20_000}}).to_bytes(),
        ]
        await harness.bus.publish([OutgoingRecord("deliveries.v1", b"ord_p", raw) for raw in poison])
        await publish(harness.bus, eta("ord_p", 8))
        await wait_for(seen, 1)
        assert seen == [8]
        dead = await harness.topic("deliveries.v1.dlq", 4)
        reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dead)
        assert reasons == ["invalid-envelope", "oversize", "schema", "unknown-type"]
        assert {r.value for r in dead} == set(poison)

    async def test_a_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries(
        self, harness: Any
    ) -> None:
        seen: list[int] = []
        attempts: list[float] = []

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            if event.stops_before == 0:
                attempts.append(time.monotonic())
                raise ValueError("a bug in the handler")
            seen.append(event.stops_before)

        harness.subscribe({ev.EtaChanged: handle}, max_attempts=3)
        await publish(harness.bus, eta("ord_b", 0))
        await publish(harness.bus, eta("ord_b", 1))
        await wait_for(seen, 1)
        assert len(attempts) == 3
        dead = await harness.topic("deliveries.v1.dlq", 1)
        headers = dict(dead[0].headers)
        assert headers["dlq.reason"] == b"handler-error"
        assert headers["dlq.attempts"] == b"3"
        assert b"a bug in the handler" in headers["dlq.error"]


class TestIdempotence:
    async def test_the_same_event_twice_has_one_effect(self, harness: Any) -> None:
        seen: list[str] = []

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            seen.append(str(envelope.id))

        harness.subscribe({ev.EtaChanged: handle})
        envelope = eta("ord_d", 1).envelope("test")
        record = OutgoingRecord("deliveries.v1", b"ord_d", envelope.to_bytes())
        await harness.bus.publish([record, record])
        await publish(harness.bus, eta("ord_d", 2))
        await wait_for(seen, 2)
        await asyncio.sleep(0.3)
        assert seen.count(str(envelope.id)) == 1
        assert len(seen) == 2


class TestBatches:
    async def test_a_batch_has_the_effects_of_its_records_handled_one_by_one(self, harness: Any) -> None:
        import sqlalchemy as sa

        from lastmile.common import outbox

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            if event.stops_before == 3:
                raise ValueError("a bad record")
            outbox.add(session, event, source="test")  # the effect, in the batch's transaction

        harness.subscribe({ev.EtaChanged: handle}, batch=50, max_attempts=2)
        twice = eta("ord_x", 1).envelope("test").to_bytes()
        values = [eta("ord_x", 0).envelope("test").to_bytes(), twice, twice, b"{poison"]
        values += [eta("ord_x", n).envelope("test").to_bytes() for n in (2, 3, 4)]
        await harness.bus.publish([OutgoingRecord("deliveries.v1", b"ord_x", v) for v in values])

        async def effects() -> list[int] | None:
            async with harness.db.read() as session:
                rows = (await session.execute(sa.select(outbox.outbox_table.c.payload).order_by("id"))).all()
            found = [ev.Envelope.from_bytes(r.payload).data["stops_before"] for r in rows]
            return found if len(found) >= 4 else None

        assert await eventually(effects, timeout=60) == [0, 1, 2, 4]
        dead = await harness.topic("deliveries.v1.dlq", 2)
        assert sorted(dict(r.headers)["dlq.reason"].decode() for r in dead) == [
            "handler-error",
            "invalid-envelope",
        ]
        await asyncio.sleep(0.3)
        assert await effects() == [0, 1, 2, 4]

    async def test_batches_over_many_keys_redelivered_after_an_outage_have_each_effect_once_in_order(
        self, harness: Any
    ) -> None:
        import sqlalchemy as sa

        from lastmile.common import outbox

        outage = {"left": 2}

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            if event.order_id == "ord_3" and event.stops_before == 5 and outage["left"] > 0:
                outage["left"] -= 1
                raise OperationalError("INSERT", {}, ConnectionRefusedError("database restarting"))
            outbox.add(session, event, source="test")  # the effect, in the batch's transaction

        harness.subscribe({ev.EtaChanged: handle}, batch=20)
        keys = [f"ord_{k}" for k in range(8)]  # over every partition
        await harness.bus.publish(
            [
                OutgoingRecord("deliveries.v1", key.encode(), eta(key, n).envelope("test").to_bytes())
                for n in range(10)
                for key in keys
            ]
        )

        async def effects() -> list[tuple[str, int]] | None:
            async with harness.db.read() as session:
                rows = (await session.execute(sa.select(outbox.outbox_table.c.payload).order_by("id"))).all()
            found = [ev.Envelope.from_bytes(r.payload).data for r in rows]
            return [(d["order_id"], d["stops_before"]) for d in found] if len(found) >= 80 else None

        found = await eventually(effects, timeout=60)
        assert outage["left"] == 0
        assert sorted(found) == sorted((key, n) for key in keys for n in range(10))  # each once
        for key in keys:
            assert [n for k, n in found if k == key] == list(range(10))
        await asyncio.sleep(0.3)
        assert len(await effects() or []) == 80


class TestInboxExempt:
    async def test_exempt_types_skip_the_inbox_alone_and_in_batches(self, harness: Any) -> None:
        seen: list[str] = []

        async def handle(session: Any, envelope: ev.Envelope, event: ev.EtaChanged) -> None:
            seen.append(str(envelope.id))

        envelope = eta("ord_x", 1).envelope("test")
        record = OutgoingRecord("deliveries.v1", b"ord_x", envelope.to_bytes())
        await harness.bus.publish([record, record, record])
        harness.subscribe({ev.EtaChanged: handle}, batch=2, inbox_exempt=frozenset({ev.EtaChanged}))
        await wait_for(seen, 3)
        assert seen == [str(envelope.id)] * 3  # the handler's own natural key must absorb these
