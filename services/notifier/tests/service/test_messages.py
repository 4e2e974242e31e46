"""Delivery events in, one message per kind and channel out, whatever the redeliveries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus, OutgoingRecord
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish
from lastmile.notifier.app import create_app
from lastmile.notifier.settings import NotifierSettings

T = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
async def notifier(tmp_path: Path) -> AsyncIterator[Any]:
    bus = InMemoryBus()
    await bus.start()
    settings = NotifierSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/notifier.db",
        ops_token=TEST_OPS_TOKEN,
        file_outbox_dir=str(tmp_path / "outbox"),
    )
    async with app_client(create_app(settings, bus=bus)) as client:
        yield client, bus, tmp_path / "outbox"
    await bus.stop()


def created(order_id: str = "ord_1") -> ev.OrderCreated:
    return ev.OrderCreated(
        order_id=order_id,
        merchant_id="mer_1",
        merchant_name="Acme",
        reference="R1",
        depot_id="dep_1",
        recipient=ev.Recipient(
            name="Ada", phone="+447700900123", email="ada@example.com", timezone="Europe/Berlin"
        ),
        destination=ev.Destination(lat=52.5, lon=13.4),
        time_windows=[ev.TimeWindow(start=T, end=T.replace(hour=17))],
        tracking_token="tok",
        tracking_url="http://127.0.0.1:8003/track/tok",
        created_at=T,
    )


async def test_a_delivered_order_gets_one_message_per_channel_even_if_the_event_comes_three_times(
    notifier: Any,
) -> None:
    client, bus, outbox_dir = notifier
    await publish(bus, created())
    delivered = ev.Delivered(order_id="ord_1", vehicle_id="veh_1", at=T).envelope("tracker")
    record = OutgoingRecord("deliveries.v1", b"ord_1", delivered.to_bytes())
    await bus.publish([record, record, record])
    files = await eventually(
        lambda: sorted(outbox_dir.glob("*.json")) if len(list(outbox_dir.glob("*.json"))) == 2 else None
    )
    messages = [json.loads(f.read_text()) for f in files]
    assert sorted(m["channel"] for m in messages) == ["email", "sms"]
    assert {m["kind"] for m in messages} == {"delivered"}
    assert all("http://127.0.0.1:8003/track/tok" in m["body"] for m in messages)
    log = (await client.get("/v1/notifications", params={"order_id": "ord_1"}, headers=ops_headers())).json()
    assert [(n["kind"], n["status"]) for n in log] == [("delivered", "sent"), ("delivered", "sent")]
    await eventually(lambda: len(bus.envelopes("notifications.v1")) == 2)


async def test_a_recipient_who_accepts_only_email_gets_no_sms(notifier: Any) -> None:
    _client, bus, outbox_dir = notifier
    order = created("ord_2")
    order = order.model_copy(update={"recipient": order.recipient.model_copy(update={"channels": ["email"]})})
    await publish(bus, order)
    await publish(bus, ev.OutForDelivery(order_id="ord_2", vehicle_id="veh_1", route_id="r", at=T))
    files = await eventually(lambda: list(outbox_dir.glob("*.json")))
    assert [json.loads(f.read_text())["channel"] for f in files] == ["email"]
