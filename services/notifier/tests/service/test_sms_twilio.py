"""SMS through a local server that implements Twilio's documented Messages endpoint and status callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lastmile.common.testing import eventually, publish
from lastmile.notifier.testing import INVALID_NUMBER, FakeTwilio, http_server

SID = "AC" + "1" * 32
TOKEN = "twilio-auth-token-for-tests-0001"
OUR_NUMBER = "+15005550006"


@pytest.fixture
async def twilio(make_notifier: Any, free_port: Any) -> AsyncIterator[Any]:
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    port = free_port()
    async with http_server(fake.app(), port), contextlib.AsyncExitStack() as stack:
        n = await stack.enter_async_context(
            make_notifier(
                sms_channel="twilio",
                twilio_base_url=f"http://127.0.0.1:{port}",
                twilio_account_sid=SID,
                twilio_auth_token=TOKEN,
                twilio_from=OUR_NUMBER,
                send_retry_base_seconds=0.05,
            )
        )
        fake.callback_client = n.client  # Twilio's callbacks reach the notifier
        yield fake, n


async def test_an_sms_goes_out_as_twilio_documents_and_its_status_follows_the_callbacks(
    twilio, orders
) -> None:
    fake, n = twilio
    order = orders.created(channels=["sms"])
    await publish(n.bus, order)
    await publish(n.bus, orders.out_for_delivery(order.order_id))
    await eventually(lambda: fake.messages)
    sent = fake.messages[0]
    assert (sent["To"], sent["From"]) == ("+447700900123", OUR_NUMBER)
    assert sent["Body"].startswith("Acme: your parcel is out for delivery and arrives around 12:00")
    log = await n.log(order.order_id)
    assert (
        sent["StatusCallback"]
        == f"http://notifier.test/v1/providers/twilio/status?notification={log[0]['id']}"
    )

    async def delivered() -> Any:
        log = await n.log(order.order_id)
        return log if log[0]["delivery_status"] == "delivered" else None

    log = await eventually(delivered)
    assert log[0]["status"] == "sent"


async def test_a_callback_without_twilios_signature_is_refused(twilio) -> None:
    _, n = twilio
    reply = await n.client.post(
        "/v1/providers/twilio/status?notification=ntf_x",
        data={"MessageSid": "SMx", "MessageStatus": "delivered"},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert reply.status_code == 401


async def test_a_customer_who_texts_stop_gets_no_more_sms(twilio, orders) -> None:
    fake, n = twilio
    order = orders.created(channels=["sms"])
    await publish(n.bus, order)
    await publish(n.bus, orders.out_for_delivery(order.order_id))
    await eventually(lambda: len(fake.messages) == 1)
    reply = await fake.inbound(
        "http://notifier.test/v1/providers/twilio/inbound", "+447700900123", OUR_NUMBER, "Stop"
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/xml")
    await publish(n.bus, orders.delivered(order.order_id))
    other = orders.created(phone="+44 7700 900123", channels=["sms"])  # the same number, spelt differently
    await publish(n.bus, other)
    await publish(n.bus, orders.delivered(other.order_id))

    async def suppressed() -> bool:
        logs = [*(await n.log(order.order_id)), *(await n.log(other.order_id))]
        return [m["status"] for m in logs if m["kind"] == "delivered"] == ["suppressed", "suppressed"]

    await eventually(suppressed)
    await asyncio.sleep(0.3)
    assert len(fake.messages) == 1


async def test_an_invalid_number_fails_at_once_without_retries(twilio, orders) -> None:
    fake, n = twilio
    order = orders.created(phone=INVALID_NUMBER, channels=["sms"])
    await publish(n.bus, order)
    await publish(n.bus, orders.delivered(order.order_id))
    await eventually(lambda: n.bus.envelopes("notifications.v1", "lastmile.notification.failed"))
    log = await n.log(order.order_id)
    assert (log[0]["status"], log[0]["attempts"]) == ("failed", 1)
    assert "21211" in log[0]["error"]
    assert fake.messages == []


async def test_twilio_being_unavailable_is_retried(twilio, orders) -> None:
    fake, n = twilio
    fake.fail_next = 2
    order = orders.created(channels=["sms"])
    await publish(n.bus, order)
    await publish(n.bus, orders.delivered(order.order_id))
    await eventually(lambda: fake.messages, timeout=15)

    async def sent() -> Any:
        log = await n.log(order.order_id)
        return log if log[0]["status"] == "sent" else None

    log = await eventually(sent)
    assert log[0]["attempts"] == 3
    assert len(fake.messages) == 1
