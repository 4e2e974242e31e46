"""Merchant webhooks against a local receiver that checks signatures with the `standardwebhooks` package."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook

from lastmile.common import events as ev
from lastmile.common.auth import hash_secret
from lastmile.common.testing import eventually, publish
from lastmile.notifier.testing import http_server

KEY = "lm_live_merchant-one-key-for-the-webhook-tests"
OTHER_KEY = "lm_live_merchant-two-key-for-the-webhook-tests"


@dataclass
class Receiver:
    """A merchant's endpoint: verifies each delivery, answers `status`."""

    secret: str = ""
    status: int = 204
    received: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks")
        async def hook(request: Request) -> Response:
            body = await request.body()
            payload = Webhook(self.secret).verify(body, dict(request.headers))  # raises when forged
            self.received.append(payload)
            self.ids.append(request.headers["webhook-id"])
            return Response(status_code=self.status)

        return app


def merchant(key: str, merchant_id: str, version: int = 1) -> ev.MerchantKeysChanged:
    return ev.MerchantKeysChanged(
        merchant_id=merchant_id, name=merchant_id, key_hashes=[hash_secret(key)], version=version,
        at=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip


@pytest.fixture
async def hooks(make_notifier: Any, free_port: Any) -> AsyncIterator[Any]:
    receiver = Receiver()
    port = free_port()
    async with (
        http_server(receiver.app(), port),
        make_notifier(
            webhooks_allow_private=True,
            webhook_schedule_seconds=(0.05, 0.05, 0.05, 0.05),
            webhook_disable_after_hours=0.0001,
            webhook_disable_min_failures=3,
        ) as n,
    ):
        await publish(n.bus, merchant(KEY, "mer_1"))
        await publish(n.bus, merchant(OTHER_KEY, "mer_2"))
        await eventually(lambda: _authorised(n))
        yield receiver, n, f"http://127.0.0.1:{port}/hooks"


async def _authorised(n: Any) -> bool:
    for key in (KEY, OTHER_KEY):
        if (await n.client.get("/v1/webhooks", headers=_as(key))).status_code != 200:
            return False
    return True


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _subscribe(n: Any, receiver: Receiver, url: str, types: list[str]) -> dict[str, Any]:
    reply = await n.client.post("/v1/webhooks", json={"url": url, "event_types": types}, headers=_as(KEY))
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    receiver.secret = created["secret"]
    return created


async def test_deliveries_are_signed_per_standard_webhooks_and_logged(hooks, orders) -> None:
    receiver, n, url = hooks
    sub = await _subscribe(n, receiver, url, ["delivery.delivered", "delivery.failed"])
    assert sub["secret"].startswith("whsec_")
    order = orders.created()
    await publish(n.bus, order)
    await publish(n.bus, orders.out_for_delivery(order.order_id))  # not subscribed
    await publish(n.bus, orders.delivered(order.order_id))
    await eventually(lambda: receiver.received)
    assert [r["type"] for r in receiver.received] == ["delivery.delivered"]
    assert receiver.received[0]["data"]["order_id"] == order.order_id

    async def logged() -> Any:
        log = (await n.client.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=_as(KEY))).json()
        return log if log and log[0]["status"] != "sending" else None

    log = await eventually(logged)
    assert [(d["id"], d["status"], d["attempts"][0]["status_code"]) for d in log] == [
        (receiver.ids[0], "delivered", 204)
    ]
    await eventually(lambda: n.bus.envelopes("notifications.v1", "lastmile.webhook.delivered"))


async def test_a_failing_endpoint_is_retried_with_the_same_id_then_disabled_with_the_reason(
    hooks, orders
) -> None:
    receiver, n, url = hooks
    receiver.status = 500
    sub = await _subscribe(n, receiver, url, ["*"])
    order = orders.created()
    await publish(n.bus, order)
    await publish(n.bus, orders.delivered(order.order_id))

    async def disabled() -> Any:
        found = (await n.client.get(f"/v1/webhooks/{sub['id']}", headers=_as(KEY))).json()
        return found if found["status"] == "disabled" else None

    found = await eventually(disabled, timeout=15)
    assert "HTTP 500" in found["disabled_reason"]
    assert len(receiver.ids) >= 3
    assert len(set(receiver.ids)) == 1
    await eventually(lambda: n.bus.envelopes("notifications.v1", "lastmile.webhook.failed"))
    receiver.status = 204
    reply = await n.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": True}, headers=_as(KEY))
    assert (reply.json()["status"], reply.json()["disabled_reason"]) == ("active", None)


async def test_private_and_loopback_addresses_are_refused_unless_allowed(make_notifier) -> None:
    async with make_notifier() as n:
        await publish(n.bus, merchant(KEY, "mer_1"))
        await eventually(lambda: _authorised_one(n))
        for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                    "http://localhost/x", "ftp://example.com/x"):  # fmt: skip
            reply = await n.client.post(
                "/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=_as(KEY)
            )
            assert reply.status_code == 422, (url, reply.text)


async def _authorised_one(n: Any) -> bool:
    return (await n.client.get("/v1/webhooks", headers=_as(KEY))).status_code == 200


async def test_a_merchant_sees_only_its_own_subscriptions_and_needs_a_key(hooks) -> None:
    receiver, n, url = hooks
    sub = await _subscribe(n, receiver, url, ["*"])
    assert (await n.client.get(f"/v1/webhooks/{sub['id']}", headers=_as(OTHER_KEY))).status_code == 404
    assert (await n.client.get("/v1/webhooks", headers=_as(OTHER_KEY))).json() == []
    assert (await n.client.get("/v1/webhooks")).status_code == 401
    assert (await n.client.get("/v1/webhooks", headers=_as("lm_live_unknown"))).status_code == 401


async def test_a_revoked_key_stops_working(hooks) -> None:
    _, n, _ = hooks
    revoked = merchant("lm_live_a-new-key-after-rotation-0000", "mer_1", version=2)
    await publish(n.bus, revoked)

    async def refused() -> bool:
        return (await n.client.get("/v1/webhooks", headers=_as(KEY))).status_code == 401

    await eventually(refused)


async def test_merchant_templates_change_the_wording(hooks, orders) -> None:
    _, n, _ = hooks
    reply = await n.client.put(
        "/v1/templates/en/delivered", headers=_as(KEY),
        json={"sms": "$merchant here: it is at your door, $name! $link"},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    bad = await n.client.put("/v1/templates/en/delivered", headers=_as(KEY), json={"sms": "$secret"})
    assert bad.status_code == 422
    order = orders.created(channels=["sms"])
    await publish(n.bus, order)
    await publish(n.bus, orders.delivered(order.order_id))

    def sent() -> list[dict[str, Any]]:
        return [json.loads(f.read_text()) for f in n.outbox.glob("*.json")] if n.outbox.exists() else []

    found = await eventually(sent)
    assert found[0]["body"] == f"Acme here: it is at your door, Ada! {order.tracking_url}"
