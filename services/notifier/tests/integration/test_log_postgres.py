"""The notification log's statements on PostgreSQL (service tests run on SQLite; these take PostgreSQL's own
paths: array parameters, the unnest insert, the inbox claim): the app on the in-memory bus and a real database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common.bus import OutgoingRecord
from lastmile.common.clock import Clock
from lastmile.common.testing import eventually, publish
from lastmile.notifier import consent
from lastmile.notifier.handlers_consent import opt_out

pytestmark = pytest.mark.integration


def files(outbox: Any) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted(outbox.glob("*.json"))] if outbox.exists() else []


async def test_a_batch_of_events_each_delivered_three_times_sends_one_message_per_channel(
    make_notifier: Any, orders: Any, postgres: Any
) -> None:
    async with make_notifier(database_url=await postgres("notifier")) as n:
        made = [orders.created() for _ in range(5)]
        for order in made:
            await publish(n.bus, order)
        await eventually(lambda: n.bus.pending("notifier", "orders.v1") == 0)
        records = [
            OutgoingRecord(
                "deliveries.v1",
                o.order_id.encode(),
                orders.delivered(o.order_id).envelope("tracker").to_bytes(),
            )
            for o in made
        ]
        await n.bus.publish(records * 3)
        await eventually(lambda: len(n.bus.envelopes("notifications.v1")) == 10, timeout=20)
        await asyncio.sleep(0.5)  # room for a second send, if there were one
        sent = files(n.outbox)
        assert sorted((m["order_id"], m["channel"]) for m in sent) == sorted(
            (o.order_id, c) for o in made for c in ("email", "sms")
        )
        for order in made:
            log = await n.log(order.order_id)
            assert [(m["kind"], m["status"], m["attempts"]) for m in log] == [("delivered", "sent", 1)] * 2


async def test_a_later_event_drops_the_held_messages_it_makes_moot(
    make_notifier: Any, orders: Any, postgres: Any
) -> None:
    night = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: messages that can wait are held
    async with make_notifier(database_url=await postgres("notifier"), clock=Clock(epoch=night)) as n:
        kept, cancelled = orders.created(), orders.created()
        for order in (kept, cancelled):
            await publish(n.bus, order)
        await eventually(lambda: n.bus.pending("notifier", "orders.v1") == 0)
        for order in (kept, cancelled):
            await publish(n.bus, ev.Delivered(order_id=order.order_id, vehicle_id="v", at=night))
        for order in (kept, cancelled):
            log = await eventually(lambda o=order: n.log(o.order_id))
            assert {(m["kind"], m["status"]) for m in log} == {("delivered", "pending")}
        cancel = ev.OrderCancelled(
            order_id=cancelled.order_id, version=2, merchant_id="mer_1", depot_id="dep_1", cancelled_at=night
        )
        await publish(n.bus, cancel)

        async def dropped() -> list[dict[str, Any]] | None:
            rows = await n.log(cancelled.order_id)
            return rows if {r["status"] for r in rows} == {"dropped"} else None

        log = await eventually(dropped)
        assert {m["error"] for m in log} == {"superseded by a later event"}
        assert {m["status"] for m in await n.log(kept.order_id)} == {"pending"}
    assert files(n.outbox) == []


async def test_an_address_that_opted_out_gets_nothing_on_that_channel(
    make_notifier: Any, orders: Any, postgres: Any
) -> None:
    async with make_notifier(database_url=await postgres("notifier")) as n:
        await opt_out("sms", consent.address_hash("sms", "+447700900777"), "sms-keyword", n.deps)
        stopped, other = orders.created(phone="+447700900777"), orders.created()
        for order in (stopped, other):
            await publish(n.bus, order)
        await eventually(lambda: n.bus.pending("notifier", "orders.v1") == 0)
        for order in (stopped, other):
            await publish(n.bus, orders.delivered(order.order_id))
        await eventually(lambda: len(files(n.outbox)) == 3, timeout=20)
        log = await eventually(lambda: _settled(n.log(stopped.order_id)), timeout=20)
        assert sorted((m["channel"], m["status"]) for m in log) == [("email", "sent"), ("sms", "suppressed")]
        assert sorted((m["order_id"], m["channel"]) for m in files(n.outbox)) == sorted(
            [(stopped.order_id, "email"), (other.order_id, "email"), (other.order_id, "sms")]
        )


async def _settled(rows: Any) -> Any:
    found = await rows
    return found if found and all(r["status"] not in ("pending", "sending") for r in found) else None


async def test_an_order_and_its_delivery_event_handled_at_the_same_time_lose_no_message(
    make_notifier: Any, orders: Any, postgres: Any
) -> None:
    # The in-memory bus runs each topic's consumer on its own: an order's event and its delivery event are in
    # two transactions at once, the delivery event finding no contact yet.
    async with make_notifier(database_url=await postgres("notifier"), consumer_batch=1) as n:
        made = [orders.created() for _ in range(12)]
        for order in made:
            delivered = orders.delivered(order.order_id)
            await n.bus.publish(
                [
                    OutgoingRecord("orders.v1", b"dep_1", order.envelope("intake").to_bytes()),
                    OutgoingRecord(
                        "deliveries.v1", order.order_id.encode(), delivered.envelope("tracker").to_bytes()
                    ),
                ]
            )
        await eventually(lambda: len(files(n.outbox)) == 24, timeout=30)
        assert sorted((m["order_id"], m["channel"]) for m in files(n.outbox)) == sorted(
            (o.order_id, c) for o in made for c in ("email", "sms")
        )
