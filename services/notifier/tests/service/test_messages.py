"""Delivery events in, one message per kind and channel out, whatever the redeliveries, crashes and failures."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from lastmile.common import events as ev
from lastmile.common.bus import OutgoingRecord
from lastmile.common.clock import Clock
from lastmile.common.testing import eventually, ops_headers, publish
from lastmile.notifier.channels import OutgoingMessage, SendError


def files(outbox: Any) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted(outbox.glob("*.json"))] if outbox.exists() else []


async def test_the_same_event_delivered_three_times_sends_one_message_per_channel(
    make_notifier, orders
) -> None:
    async with make_notifier() as n:
        order = orders.created()
        await publish(n.bus, order)
        delivered = orders.delivered(order.order_id).envelope("tracker")
        record = OutgoingRecord("deliveries.v1", order.order_id.encode(), delivered.to_bytes())
        await n.bus.publish([record, record, record])
        await eventually(lambda: len(n.bus.envelopes("notifications.v1")) == 2)
        await asyncio.sleep(0.3)  # room for a second send, if there were one
        messages = files(n.outbox)
        assert sorted(m["channel"] for m in messages) == ["email", "sms"]
        assert {m["kind"] for m in messages} == {"delivered"}
        assert all(order.tracking_url in m["body"] for m in messages)
        log = await n.log(order.order_id)
        assert [(m["kind"], m["status"]) for m in log] == [("delivered", "sent"), ("delivered", "sent")]
        assert len(n.bus.envelopes("notifications.v1", "lastmile.notification.sent")) == 2


async def test_the_same_news_in_a_new_event_sends_nothing_new(make_notifier, orders) -> None:
    async with make_notifier() as n:
        order = orders.created()
        await publish(n.bus, order)
        for _ in range(2):  # the planner re-announcing the same window (a new event id each time)
            await publish(n.bus, orders.scheduled(order.order_id))
        await eventually(lambda: len(files(n.outbox)) == 2)
        await asyncio.sleep(0.3)
        assert len(files(n.outbox)) == 2


async def test_a_recipient_who_accepts_only_email_gets_no_sms(make_notifier, orders) -> None:
    async with make_notifier() as n:
        order = orders.created(channels=["email"])
        await publish(n.bus, order)
        await publish(n.bus, orders.out_for_delivery(order.order_id))
        found = await eventually(lambda: files(n.outbox))
        assert [m["channel"] for m in found] == ["email"]


async def test_a_delivery_event_before_its_order_waits_for_it(make_notifier, orders) -> None:
    async with make_notifier() as n:
        order = orders.created()
        await publish(n.bus, orders.scheduled(order.order_id))
        await asyncio.sleep(0.2)
        assert files(n.outbox) == []
        await publish(n.bus, order)
        found = await eventually(lambda: files(n.outbox) if len(files(n.outbox)) == 2 else None)
        assert {m["kind"] for m in found} == {"scheduled"}
        assert "between 11:00 and 13:00" in found[0]["body"]  # the promised window, in Berlin time


async def test_an_eta_for_a_delivered_stop_is_dropped_and_counted(make_notifier, orders) -> None:
    from prometheus_client import REGISTRY

    def dropped() -> float:
        labels = {"kind": "eta_changed", "reason": "already-delivered"}
        return REGISTRY.get_sample_value("lastmile_notifier_dropped_total", labels) or 0.0

    async with make_notifier() as n:
        order = orders.created()
        await publish(n.bus, order)
        await publish(n.bus, orders.delivered(order.order_id))
        before = dropped()
        await publish(n.bus, orders.eta(order.order_id, 90))
        await eventually(lambda: dropped() == before + 1)
        await asyncio.sleep(0.2)
        assert {m["kind"] for m in files(n.outbox)} == {"delivered"}


async def test_quiet_hours_hold_a_message_that_can_wait_until_morning(make_notifier, orders) -> None:
    night = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    async with make_notifier(clock=Clock(epoch=night)) as n:
        order = orders.created()
        await publish(n.bus, order)
        await publish(n.bus, ev.Delivered(order_id=order.order_id, vehicle_id="v", at=night))
        log = await eventually(lambda: n.log(order.order_id))
        assert {m["status"] for m in log} == {"pending"}
        assert {m["next_attempt_at"] for m in log} == {"2026-12-02T07:00:00Z"}  # 08:00 in Berlin
        await asyncio.sleep(1.5)
        assert files(n.outbox) == []


class Flaky:
    """Fails the first `failures` sends with a transient error, then delivers."""

    idempotent = False

    def __init__(self, failures: int, *, permanent: bool = False) -> None:
        self.failures, self.permanent = failures, permanent
        self.calls: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> str:
        self.calls.append(message)
        if len(self.calls) <= self.failures:
            raise SendError("provider says no", permanent=self.permanent)
        return f"p-{len(self.calls)}"

    async def close(self) -> None:
        return None


async def test_a_transient_failure_is_retried_with_backoff_until_sent(make_notifier, orders) -> None:
    sms = Flaky(2)
    async with make_notifier(
        channels={"sms": sms, "email": Flaky(0)}, send_retry_base_seconds=0.05, send_retry_max_seconds=0.2
    ) as n:
        order = orders.created(channels=["sms"])
        await publish(n.bus, order)
        await publish(n.bus, orders.delivered(order.order_id))
        log = await eventually(lambda: _status(n, order.order_id, "sent"), timeout=15)
        assert log[0]["attempts"] == 3
        assert len(sms.calls) == 3


async def test_a_permanent_failure_is_not_retried_and_is_announced(make_notifier, orders) -> None:
    sms = Flaky(99, permanent=True)
    async with make_notifier(channels={"sms": sms, "email": Flaky(0)}, send_retry_base_seconds=0.05) as n:
        order = orders.created(channels=["sms"])
        await publish(n.bus, order)
        await publish(n.bus, orders.delivered(order.order_id))
        await eventually(lambda: n.bus.envelopes("notifications.v1", "lastmile.notification.failed"))
        await asyncio.sleep(0.5)
        assert len(sms.calls) == 1
        failed = (
            await n.client.get("/v1/notifications", params={"status": "failed"}, headers=ops_headers())
        ).json()
        assert [(m["order_id"], m["error"]) for m in failed] == [(order.order_id, "provider says no")]


async def test_after_the_last_retry_the_failure_is_announced(make_notifier, orders) -> None:
    sms = Flaky(99)
    async with make_notifier(
        channels={"sms": sms, "email": Flaky(0)}, send_retry_base_seconds=0.02, send_max_attempts=3
    ) as n:
        order = orders.created(channels=["sms"])
        await publish(n.bus, order)
        await publish(n.bus, orders.delivered(order.order_id))
        await eventually(
            lambda: n.bus.envelopes("notifications.v1", "lastmile.notification.failed"), timeout=15
        )
        assert len(sms.calls) == 3


class Hanging:
    """Takes the message and never answers: the process dies before it can record the send."""

    idempotent = False

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: OutgoingMessage) -> str:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


async def test_a_crash_between_recording_and_sending_does_not_lose_the_message(make_notifier, orders) -> None:
    hanging = Hanging()
    order = orders.created(channels=["sms"])
    async with make_notifier(channels={"sms": hanging, "email": Flaky(0)}, send_lease_seconds=0.5) as n:
        await publish(n.bus, order)
        await publish(n.bus, orders.delivered(order.order_id))
        await eventually(lambda: hanging.calls == 1)
        assert [m["status"] for m in await n.log(order.order_id)] == ["sending"]  # recorded before the call
        bus = n.bus
    # The first process is gone with the message claimed; the next one finds it once the lease is over.
    after = Flaky(0)
    async with make_notifier(
        channels={"sms": after, "email": Flaky(0)}, send_lease_seconds=0.5, bus=bus
    ) as n:
        log = await eventually(lambda: _status(n, order.order_id, "sent"), timeout=15)
        assert log[0]["attempts"] == 2
        await asyncio.sleep(0.5)
        assert len(after.calls) == 1


async def _status(n: Any, order_id: str, status: str) -> list[dict[str, Any]] | None:
    log = await n.log(order_id)
    return log if log and all(m["status"] == status for m in log) else None
