"""Poison events (invalid JSON, schema violations, unknown types, oversize, a handler that always fails) land
in `<topic>.dlq` with the original bytes and the error, after bounded retries, and the partition keeps moving:
the valid events behind them, on the same key and so the same partition, are handled.

The consumer is `driver.py` (lastmile.common's KafkaBus and Dispatcher, max_attempts=3), on the shared broker
and PostgreSQL under this test's own prefix and database.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lastmile.common import events as ev

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
KEY = "ord_poisoned"


def envelope(seq: int, vehicle_id: str = "v1") -> dict[str, Any]:
    payload = ev.Arrived(order_id=KEY, vehicle_id=vehicle_id, at=T0 + timedelta(seconds=seq))
    return json.loads(payload.envelope("faults").to_bytes())


async def test_poison_events_are_dead_lettered_with_their_error_and_the_partition_moves_on(
    kafka: Any, postgres: Any, drivers: Any, faults_helpers: Any
) -> None:
    h = faults_helpers
    topic = kafka.prefix + "deliveries.v1"
    await h.create_topics(kafka.bootstrap, [topic, topic + ".dlq"])
    url = await postgres("poison")
    assert await drivers("init", "init", "--db", url).start().exited(60) == 0

    schema = envelope(2)
    schema["data"]["at"] = "not a time"
    unknown = envelope(3)
    unknown["type"] = "lastmile.delivery.teleported"
    oversize = envelope(4)
    oversize["data"]["padding"] = "x" * 600_000  # over LASTMILE_MAX_EVENT_BYTES (512 KiB)
    poison = {
        "invalid-envelope": b"{this is not json",
        "schema": json.dumps(schema).encode(),
        "unknown-type": json.dumps(unknown).encode(),
        "oversize": json.dumps(oversize).encode(),
        "handler-error": json.dumps(envelope(5, vehicle_id="fails")).encode(),
    }
    valid = [json.dumps(envelope(seq)).encode() for seq in (1, 6, 7, 8)]
    # All on one key, so one partition: a valid event first, the poison, then valid events behind it.
    values = [valid[0], *poison.values(), *valid[1:]]
    await h.produce(kafka.bootstrap, [(topic, KEY.encode(), v, [("trace", b"t-1")]) for v in values])

    consumer = drivers(
        "consumer", "consume", "--bootstrap", kafka.bootstrap, "--prefix", kafka.prefix, "--db", url
    ).start()

    async def handled_all_valid() -> list[Any] | None:
        found = await h.rows(url, "SELECT seq FROM effects ORDER BY id")
        return found if len(found) >= 4 else None

    await h.wait_for(handled_all_valid, 60, "the valid events behind the poison handled")

    async def dead_letters() -> list[Any] | None:
        found = await h.read_topic(kafka.bootstrap, topic + ".dlq")
        return found if len(found) >= len(poison) else None

    dlq = await h.wait_for(dead_letters, 30, "every poison event dead-lettered")
    await asyncio.sleep(1.0)
    assert consumer.stop() == 0

    assert [r["seq"] for r in await h.rows(url, "SELECT seq FROM effects ORDER BY id")] == [1, 6, 7, 8]
    assert len(dlq) == len(poison)
    by_reason = {r.header("dlq.reason"): r for r in dlq}
    assert set(by_reason) == set(poison)
    source = {v: offset for offset, v in enumerate(values)}
    for reason, record in by_reason.items():
        assert record.value == poison[reason]  # the original bytes, untouched
        assert record.key == KEY.encode()
        assert record.header("trace") == "t-1"  # the original headers travel along
        assert record.header("dlq.topic") == "deliveries.v1"
        assert int(record.header("dlq.offset") or -1) == source[poison[reason]]
        assert record.header("dlq.group") == "faults"
        assert record.header("dlq.error")
    assert "ValueError" in (by_reason["handler-error"].header("dlq.error") or "")
    assert by_reason["handler-error"].header("dlq.attempts") == "3"  # bounded retries, then the dead letter
    assert all(by_reason[r].header("dlq.attempts") == "1" for r in poison if r != "handler-error")
    # The group moved past everything: nothing is left to redeliver.
    offsets = await h.committed(kafka.bootstrap, kafka.prefix + "faults", topic)
    assert sum(offsets.values()) == len(values)
    assert consumer.outcomes() == {"handled": 4, "dead-lettered": len(poison)}
