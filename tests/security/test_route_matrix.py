"""Every route of every service, called with every kind of credential: the expected answers are written down
below, and a route that is not in the table fails the test (a new route must be classified).

The credentials, per kind of route:

| column    | merchant routes           | device routes                 | ops routes              | public routes |
|-----------|---------------------------|-------------------------------|-------------------------|---------------|
| anonymous | no Authorization header   | no Authorization header       | no Authorization header | no header     |
| other     | merchant B's key, on A's  | the other van's phone, on     | merchant A's key        | merchant B's  |
|           | resources                 | van 1's stops and route       |                         | key           |
| wrong     | a device key              | merchant A's key              | a device key            | a device key  |
| revoked   | A's revoked key           | a revoked device key          | A's revoked key         | revoked key   |
| valid     | merchant A's key          | van 1's phone                 | the ops token           | none          |

Public routes (health, metrics, docs, the tracking page by its token, unsubscribe by its token, Twilio's
callbacks with their signature) answer whatever the Authorization header says: their credential is the token in
the URL or the provider's signature (for Twilio, `valid` is a correctly signed request, every other column an
unsigned one). A merchant asking for another merchant's order or webhook gets 404, never 403 or 200.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

pytestmark = pytest.mark.security

KINDS = ("merchant", "device", "ops", "public", "twilio")
COLUMNS = ("anonymous", "other", "wrong", "revoked", "valid")

# fmt: off
MATRIX: dict[tuple[str, str, str], tuple[str, int, int, int, int, int]] = {
    # (service, method, path):                                     kind        anon other wrong revkd valid
    ("order-intake", "GET", "/healthz"):                           ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/readyz"):                            ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/metrics"):                           ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/openapi.json"):                      ("public",   200, 200, 200, 200, 200),
    ("order-intake", "HEAD", "/openapi.json"):                     ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/docs"):                              ("public",   200, 200, 200, 200, 200),
    ("order-intake", "HEAD", "/docs"):                             ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/docs/oauth2-redirect"):              ("public",   200, 200, 200, 200, 200),
    ("order-intake", "HEAD", "/docs/oauth2-redirect"):             ("public",   200, 200, 200, 200, 200),
    ("order-intake", "GET", "/redoc"):                             ("public",   200, 200, 200, 200, 200),
    ("order-intake", "HEAD", "/redoc"):                            ("public",   200, 200, 200, 200, 200),
    ("order-intake", "POST", "/v1/orders"):                        ("merchant", 401, 201, 401, 401, 201),
    ("order-intake", "POST", "/v1/orders/batch"):                  ("merchant", 401, 200, 401, 401, 200),
    ("order-intake", "GET", "/v1/orders"):                         ("merchant", 401, 200, 401, 401, 200),
    ("order-intake", "GET", "/v1/orders/{order_id}"):              ("merchant", 401, 404, 401, 401, 200),
    ("order-intake", "PATCH", "/v1/orders/{order_id}"):            ("merchant", 401, 404, 401, 401, 200),
    ("order-intake", "POST", "/v1/orders/{order_id}/cancel"):      ("merchant", 401, 404, 401, 401, 200),
    ("order-intake", "GET", "/v1/orders/{order_id}/history"):      ("merchant", 401, 404, 401, 401, 200),
    ("order-intake", "GET", "/v1/orders/{order_id}/tracking"):     ("merchant", 401, 404, 401, 401, 200),
    ("order-intake", "POST", "/v1/merchants"):                     ("ops",      401, 401, 401, 401, 201),
    ("order-intake", "POST", "/v1/merchants/{merchant_id}/keys"):  ("ops",      401, 401, 401, 401, 201),
    ("order-intake", "DELETE", "/v1/merchants/{merchant_id}/keys/{key_id}"): ("ops", 401, 401, 401, 401, 204),

    ("planner", "GET", "/healthz"):                                ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/readyz"):                                 ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/metrics"):                                ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/openapi.json"):                           ("public",   200, 200, 200, 200, 200),
    ("planner", "HEAD", "/openapi.json"):                          ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/docs"):                                   ("public",   200, 200, 200, 200, 200),
    ("planner", "HEAD", "/docs"):                                  ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/docs/oauth2-redirect"):                   ("public",   200, 200, 200, 200, 200),
    ("planner", "HEAD", "/docs/oauth2-redirect"):                  ("public",   200, 200, 200, 200, 200),
    ("planner", "GET", "/redoc"):                                  ("public",   200, 200, 200, 200, 200),
    ("planner", "HEAD", "/redoc"):                                 ("public",   200, 200, 200, 200, 200),
    ("planner", "POST", "/v1/depots"):                             ("ops",      401, 401, 401, 401, 201),
    ("planner", "GET", "/v1/depots"):                              ("ops",      401, 401, 401, 401, 200),
    ("planner", "POST", "/v1/vehicles"):                           ("ops",      401, 401, 401, 401, 201),
    ("planner", "GET", "/v1/vehicles"):                            ("ops",      401, 401, 401, 401, 200),
    ("planner", "POST", "/v1/drivers"):                            ("ops",      401, 401, 401, 401, 201),
    ("planner", "GET", "/v1/drivers"):                             ("ops",      401, 401, 401, 401, 200),
    ("planner", "POST", "/v1/plans"):                              ("ops",      401, 401, 401, 401, 202),
    ("planner", "GET", "/v1/plans"):                               ("ops",      401, 401, 401, 401, 200),
    ("planner", "GET", "/v1/plans/{plan_id}"):                     ("ops",      401, 401, 401, 401, 200),
    ("planner", "GET", "/v1/routes"):                              ("ops",      401, 401, 401, 401, 200),
    ("planner", "GET", "/v1/drivers/{vehicle_id}/route"):          ("device",   401, 404, 401, 401, 200),

    ("tracker", "GET", "/healthz"):                                ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/readyz"):                                 ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/metrics"):                                ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/openapi.json"):                           ("public",   200, 200, 200, 200, 200),
    ("tracker", "HEAD", "/openapi.json"):                          ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/docs"):                                   ("public",   200, 200, 200, 200, 200),
    ("tracker", "HEAD", "/docs"):                                  ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/docs/oauth2-redirect"):                   ("public",   200, 200, 200, 200, 200),
    ("tracker", "HEAD", "/docs/oauth2-redirect"):                  ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/redoc"):                                  ("public",   200, 200, 200, 200, 200),
    ("tracker", "HEAD", "/redoc"):                                 ("public",   200, 200, 200, 200, 200),
    ("tracker", "POST", "/v1/devices"):                            ("ops",      401, 401, 401, 401, 201),
    ("tracker", "DELETE", "/v1/devices/{device_id}"):              ("ops",      401, 401, 401, 401, 204),
    ("tracker", "POST", "/v1/pings"):                              ("device",   401, 202, 401, 401, 202),
    ("tracker", "POST", "/v1/stops/{order_id}/complete"):          ("device",   401, 404, 401, 401, 200),
    ("tracker", "POST", "/v1/routes/{route_id}/start"):            ("device",   401, 404, 401, 401, 200),
    ("tracker", "POST", "/v1/routes/{route_id}/finish"):           ("device",   401, 404, 401, 401, 200),
    ("tracker", "GET", "/v1/stops/{order_id}/proof/{kind}"):       ("ops",      401, 401, 401, 401, 200),
    ("tracker", "GET", "/track/{token}"):                          ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/track/{token}/events"):                   ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/v1/track/{token}"):                       ("public",   200, 200, 200, 200, 200),
    ("tracker", "GET", "/v1/vehicles"):                            ("ops",      401, 401, 401, 401, 200),
    ("tracker", "GET", "/v1/vehicles/stream"):                     ("ops",      401, 401, 401, 401, 200),
    ("tracker", "GET", "/v1/vehicles/{vehicle_id}/position"):      ("ops",      401, 401, 401, 401, 200),
    ("tracker", "GET", "/v1/vehicles/{vehicle_id}/track"):         ("ops",      401, 401, 401, 401, 200),

    ("notifier", "GET", "/healthz"):                               ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/readyz"):                                ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/metrics"):                               ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/openapi.json"):                          ("public",   200, 200, 200, 200, 200),
    ("notifier", "HEAD", "/openapi.json"):                         ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/docs"):                                  ("public",   200, 200, 200, 200, 200),
    ("notifier", "HEAD", "/docs"):                                 ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/docs/oauth2-redirect"):                  ("public",   200, 200, 200, 200, 200),
    ("notifier", "HEAD", "/docs/oauth2-redirect"):                 ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/redoc"):                                 ("public",   200, 200, 200, 200, 200),
    ("notifier", "HEAD", "/redoc"):                                ("public",   200, 200, 200, 200, 200),
    ("notifier", "GET", "/v1/notifications"):                      ("ops",      401, 401, 401, 401, 200),
    ("notifier", "GET", "/v1/unsubscribe/{token}"):                ("public",   200, 200, 200, 200, 200),
    ("notifier", "POST", "/v1/unsubscribe/{token}"):               ("public",   200, 200, 200, 200, 200),
    ("notifier", "POST", "/v1/providers/twilio/status"):           ("twilio",   401, 401, 401, 401, 204),
    ("notifier", "POST", "/v1/providers/twilio/inbound"):          ("twilio",   401, 401, 401, 401, 200),
    ("notifier", "POST", "/v1/webhooks"):                          ("merchant", 401, 201, 401, 401, 201),
    ("notifier", "GET", "/v1/webhooks"):                           ("merchant", 401, 200, 401, 401, 200),
    ("notifier", "GET", "/v1/webhooks/{subscription_id}"):         ("merchant", 401, 404, 401, 401, 200),
    ("notifier", "PATCH", "/v1/webhooks/{subscription_id}"):       ("merchant", 401, 404, 401, 401, 200),
    ("notifier", "DELETE", "/v1/webhooks/{subscription_id}"):      ("merchant", 401, 404, 401, 401, 204),
    ("notifier", "GET", "/v1/webhooks/{subscription_id}/deliveries"): ("merchant", 401, 404, 401, 401, 200),
    ("notifier", "GET", "/v1/templates"):                          ("merchant", 401, 200, 401, 401, 200),
    # templates are the caller's own: B's PUT sets B's, never A's
    ("notifier", "PUT", "/v1/templates/{language}/{kind}"):        ("merchant", 401, 200, 401, 401, 200),
    # B deletes its own template of that kind (there is none: 204 all the same); A's stays (see below)
    ("notifier", "DELETE", "/v1/templates/{language}/{kind}"):     ("merchant", 401, 204, 401, 401, 204),
}
# fmt: on


def app_routes(service: str, app: FastAPI) -> set[tuple[str, str, str]]:
    """(service, method, path) of every route the app serves, enumerated from the app itself."""
    found = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or ():
            found.add((service, method, str(route.path)))
    return found


async def test_every_route_of_every_service_is_in_the_matrix(platform: Any) -> None:
    served = set().union(*(app_routes(name, app) for name, app in platform.apps.items()))
    assert sorted(served - MATRIX.keys()) == [], "routes without an entry in MATRIX: classify them"
    assert sorted(MATRIX.keys() - served) == [], "entries in MATRIX for routes that no longer exist"
    assert {kind for kind, *_ in MATRIX.values()} <= set(KINDS)


# ---------------------------------------------------------------------------------------------------------
# Calling a route: straight through ASGI, so that a live stream can be read up to its first event and left


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


async def call(
    app: FastAPI,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    query: str = "",
    content_type: str = "application/json",
) -> Answer:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers += [(b"host", b"test"), (b"content-type", content_type.encode())]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "app": app,
    }
    answered = asyncio.Event()
    sent = False
    status, chunks, reply_headers = [0], [], {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # the client listens until it has its answer, then goes away
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
            reply_headers.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            answered.set()  # the whole body, or a stream's first event: enough to judge

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(answered.wait(), 20)
    finally:
        try:
            await asyncio.wait_for(asyncio.shield(task), 5)
        except TimeoutError:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    return Answer(status[0], b"".join(chunks), reply_headers)


# ---------------------------------------------------------------------------------------------------------
# The resources each route is called on, and the request that route is happy with


@dataclass
class Setup:
    values: dict[str, str]  # path parameter → value
    by_route: dict[tuple[str, str, str], dict[str, str]]  # path parameters of destructive routes, their own
    credentials: dict[str, dict[str, dict[str, str]]]  # kind → column → headers
    secrets_of_a: list[str]  # ids only merchant A may see


@pytest.fixture
async def setup(start_platform: Any) -> AsyncIterator[tuple[Any, Setup]]:
    # webhooks to 127.0.0.1:9 (nothing listens): deliveries fail on this machine, never leave it
    async with start_platform(notifier={"webhooks_allow_private": True}) as p:
        a = p.merchants[0]["id"]
        # today's orders (the van will be out with them), and two for tomorrow that can still be changed
        orders = [await p.create_order() for _ in range(3)]
        tomorrow = [{"start": "2030-12-03T10:00:00+01:00", "end": "2030-12-03T18:00:00+01:00"}]
        orders += [await p.create_order(time_windows=tomorrow) for _ in range(2)]
        read, other_van, complete, patch, cancel = orders
        await p.wait_status(orders, "scheduled")
        plans = await p["planner"].get("/v1/plans", params={"depot_id": p.depot["id"]}, headers=p.ops)
        assert plans.status_code == 200, plans.text
        assert plans.json(), "the planner recorded its plans"
        plan = plans.json()[0]
        route = await p.tracker_route(complete)
        van = route["vehicle_id"]
        p.vehicles.sort(key=lambda v: v["id"] != van)  # van 1 first
        p.devices.sort(key=lambda d: d["vehicle_id"] != van)
        done = {
            "outcome": "delivered",
            "recipient_name": "Ada",
            "photo": {"content_base64": PNG},
        }
        reply = await p["tracker"].post(f"/v1/stops/{read.id}/complete", json=done, headers=p.driver(0))
        if reply.status_code == 404:  # the read order went to the other van: complete it there
            reply = await p["tracker"].post(f"/v1/stops/{read.id}/complete", json=done, headers=p.driver(1))
        assert reply.status_code == 200, reply.text
        assert (await p.ping(p.driver(0), 52.53, 13.41)).status_code == 202
        await p.settle()

        async def created(service: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
            reply = await p[service].post(path, json=body, headers=headers)
            assert reply.status_code in (200, 201, 202), reply.text
            return reply.json()

        hook = {"url": "http://127.0.0.1:9/hook", "event_types": ["delivery.failed"]}
        webhook = await created("notifier", "/v1/webhooks", hook, p.merchant_a)
        doomed = await created("notifier", "/v1/webhooks", hook, p.merchant_a)
        spare_key = await created("order-intake", f"/v1/merchants/{a}/keys", {"label": "spare"}, p.ops)
        spare_device = await created("tracker", "/v1/devices", {"vehicle_id": van}, p.ops)
        plan = await created("planner", "/v1/plans", {"depot_id": p.depot["id"], "date": "2030-12-02"}, p.ops)
        template = {"sms": "$merchant: on its way $link"}
        reply = await p["notifier"].put("/v1/templates/en/delivered", json=template, headers=p.merchant_a)
        assert reply.status_code == 200, reply.text
        email = next(m for m in p.messages() if m["channel"] == "email" and m["order_id"] == read.id)
        unsubscribe = email["headers"]["List-Unsubscribe"].strip("<>").rsplit("/", 1)[-1]
        await p.settle()

        device, merchant = p.driver(0), p.merchant_a
        revoked_merchant, revoked_device = p.bearer(p.revoked_merchant_key), p.bearer(p.revoked_device_key)
        credentials = {
            "merchant": _columns({}, p.merchant_b, device, revoked_merchant, merchant),
            "device": _columns({}, p.driver(1), merchant, revoked_device, device),
            "ops": _columns({}, merchant, device, revoked_merchant, p.ops),
            "public": _columns({}, p.merchant_b, device, revoked_merchant, {}),
            "twilio": _columns({}, p.merchant_b, device, revoked_merchant, {}),
        }
        values = {
            "order_id": read.id,
            "merchant_id": a,
            "key_id": spare_key["id"],
            "device_id": spare_device["id"],
            "plan_id": plan["plan_id"] if "plan_id" in plan else plan["id"],
            "route_id": route["route_id"] if "route_id" in route else route["id"],
            "vehicle_id": van,
            "subscription_id": webhook["id"],
            "language": "en",
            "kind": "delivered",
        }
        by_route = {
            ("order-intake", "PATCH", "/v1/orders/{order_id}"): {"order_id": patch.id},
            ("order-intake", "POST", "/v1/orders/{order_id}/cancel"): {"order_id": cancel.id},
            ("tracker", "POST", "/v1/stops/{order_id}/complete"): {"order_id": complete.id},
            ("tracker", "GET", "/v1/stops/{order_id}/proof/{kind}"): {"kind": "photo"},
            ("tracker", "GET", "/track/{token}"): {"token": read.token},
            ("tracker", "GET", "/track/{token}/events"): {"token": read.token},
            ("tracker", "GET", "/v1/track/{token}"): {"token": read.token},
            ("notifier", "GET", "/v1/unsubscribe/{token}"): {"token": unsubscribe},
            ("notifier", "POST", "/v1/unsubscribe/{token}"): {"token": unsubscribe},
            ("notifier", "DELETE", "/v1/webhooks/{subscription_id}"): {"subscription_id": doomed["id"]},
        }
        secrets_of_a = [o.id for o in orders] + [webhook["id"], doomed["id"], a]
        assert other_van is not None
        yield p, Setup(values, by_route, credentials, secrets_of_a)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _columns(*headers: dict[str, str]) -> dict[str, dict[str, str]]:
    return dict(zip(COLUMNS, headers, strict=True))


def request_for(key: tuple[str, str, str], p: Any, s: Setup) -> tuple[bytes, str, str]:
    """(body, query, content type) of a request the route accepts from the right caller."""
    service, _method, path = key
    bodies: dict[tuple[str, str, str], Any] = {
        ("order-intake", "POST", "/v1/orders"): p.order_body(),
        ("order-intake", "POST", "/v1/orders/batch"): {"orders": [p.order_body()]},
        ("order-intake", "PATCH", "/v1/orders/{order_id}"): {"recipient": {"name": "Grace Hopper"}},
        ("order-intake", "POST", "/v1/orders/{order_id}/cancel"): {"reason": "changed mind"},
        ("order-intake", "POST", "/v1/merchants"): {"name": "Charlie"},
        ("order-intake", "POST", "/v1/merchants/{merchant_id}/keys"): {"label": "rotation"},
        ("planner", "POST", "/v1/depots"): {"name": "Nord", "lat": 52.55, "lon": 13.38},
        ("planner", "POST", "/v1/vehicles"): {"depot_id": p.depot["id"]},
        ("planner", "POST", "/v1/drivers"): {"name": "Dora"},
        ("planner", "POST", "/v1/plans"): {"depot_id": p.depot["id"], "date": "2030-12-02"},
        ("tracker", "POST", "/v1/devices"): {"vehicle_id": p.vehicles[0]["id"]},
        ("tracker", "POST", "/v1/pings"): {
            "pings": [{"lat": 52.521, "lon": 13.401, "recorded_at": p.clock.now().isoformat()}]
        },
        ("tracker", "POST", "/v1/stops/{order_id}/complete"): {
            "outcome": "delivered",
            "recipient_name": "Ada",
        },
        ("notifier", "POST", "/v1/webhooks"): {
            "url": "http://127.0.0.1:9/x",
            "event_types": ["delivery.failed"],
        },
        ("notifier", "PATCH", "/v1/webhooks/{subscription_id}"): {"description": "renamed"},
        ("notifier", "PUT", "/v1/templates/{language}/{kind}"): {"sms": "$merchant: delivered"},
    }
    queries = {
        ("planner", "GET", "/v1/routes"): {"date": "2030-12-02"},
        ("planner", "GET", "/v1/drivers/{vehicle_id}/route"): {"date": "2030-12-02"},
        ("notifier", "GET", "/v1/notifications"): {"order_id": s.values["order_id"]},
    }
    if service == "notifier" and path.startswith("/v1/providers/twilio/"):
        return (
            b"MessageStatus=delivered&MessageSid=SM1",
            "notification=ntf_unknown",
            "application/x-www-form-urlencoded",
        )
    body = bodies.get(key)
    return (
        (json.dumps(body).encode() if body is not None else b""),
        urlencode(queries.get(key, {})),
        "application/json",
    )


async def test_every_route_answers_every_credential_as_the_matrix_says(setup: tuple[Any, Setup]) -> None:
    p, s = setup
    wrong: list[str] = []
    for key in sorted(MATRIX, key=_destructive_last):
        service, method, template = key
        kind, *expected = MATRIX[key]
        params = {**s.values, **s.by_route.get(key, {})}
        path = template.format(**params)
        body, query, content_type = request_for(key, p, s)
        for column, want in zip(COLUMNS, expected, strict=True):
            headers = dict(s.credentials[kind][column])
            if kind == "twilio" and column == "valid":
                headers |= p.twilio_signature(path, query, body)
            answer = await call(p.apps[service], method, path, headers, body, query, content_type)
            if answer.status != want:
                wrong.append(
                    f"{method} {service}{template} {column}: {answer.status} (want {want}) {answer.body[:200]!r}"
                )
                continue
            problem = answer.headers.get("content-type") == "application/problem+json"
            if answer.status >= 400 and method != "HEAD" and kind != "public" and not problem:
                wrong.append(f"{method} {service}{template} {column}: {answer.status} not problem+json")
            if column == "other" and kind in ("merchant", "device") and answer.status < 300:
                leaked = [x for x in s.secrets_of_a if x.encode() in answer.body]
                if leaked:
                    wrong.append(f"{method} {service}{template} {column}: shows {leaked}")
    assert not wrong, "\n".join(wrong)


def _destructive_last(key: tuple[str, str, str]) -> tuple[int, str, str, str]:
    """Reads first, then changes, then deletions and revocations, so that each call finds what it needs."""
    service, method, path = key
    rank = {"GET": 0, "HEAD": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 3}[method]
    if path.endswith(("/cancel", "/complete")):
        rank = 2
    if path.endswith("/finish"):  # fails the stops still open
        rank = 3
    return rank, service, path, method


async def test_a_merchant_changes_only_its_own_templates(platform: Any) -> None:
    notifier = platform["notifier"]
    mine = {"sms": "$merchant (A): on its way $link"}
    reply = await notifier.put("/v1/templates/en/delivered", json=mine, headers=platform.merchant_a)
    assert reply.status_code == 200, reply.text
    theirs = {"sms": "B was here $link"}
    reply = await notifier.put("/v1/templates/en/delivered", json=theirs, headers=platform.merchant_b)
    assert reply.status_code == 200, reply.text
    reply = await notifier.delete("/v1/templates/en/delivered", headers=platform.merchant_b)
    assert reply.status_code == 204, reply.text
    a_templates = (await notifier.get("/v1/templates", headers=platform.merchant_a)).json()
    assert [t["sms"] for t in a_templates if t.get("sms") and "(A)" in t["sms"]] == [mine["sms"]]
    assert "B was here" not in json.dumps(a_templates)
