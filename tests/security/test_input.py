"""Hostile input: oversized and endless bodies, deep nesting, huge batches, broken Unicode, injection strings,
coordinates at and past the poles and the antimeridian. Each answered with problem+json, never a 500; what is
stored comes back verbatim, and what customers see is escaped."""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import markupsafe
import pytest

pytestmark = pytest.mark.security

PROBLEM = "application/problem+json"


def assert_problem(reply: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert reply.status_code in statuses, (reply.status_code, reply.text[:300])
    assert reply.headers["content-type"] == PROBLEM, reply.headers
    body: dict[str, Any] = reply.json()
    assert body["status"] == reply.status_code
    return body


def json_routes(p: Any) -> list[tuple[str, str, dict[str, str]]]:
    """A JSON-taking route of each service, with a caller it accepts."""
    return [
        ("order-intake", "/v1/orders", p.merchant_a),
        ("order-intake", "/v1/orders/batch", p.merchant_a),
        ("planner", "/v1/depots", p.ops),
        ("tracker", "/v1/pings", p.driver(0)),
        ("tracker", "/v1/devices", p.ops),
        ("notifier", "/v1/webhooks", p.merchant_a),
    ]


async def test_oversized_bodies_get_413_whether_declared_or_streamed(platform: Any) -> None:
    limit = 24 * 1024 * 1024  # past every route's limit (the largest: a batch of a thousand orders)
    big = b'{"x": "' + b"a" * limit + b'"}'
    for service, path, headers in json_routes(platform):
        reply = await platform[service].post(
            path, content=big, headers=headers | {"content-type": "application/json"}
        )
        assert_problem(reply, 413)

        async def endless() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"x": "'
            for _ in range(limit // 65536 + 2):
                yield b"a" * 65536

        reply = await platform[service].post(
            path, content=endless(), headers=headers | {"content-type": "application/json"}
        )
        assert_problem(reply, 413)


async def test_deeply_nested_json_is_refused_without_a_crash(platform: Any) -> None:
    for depth in (200, 100_000):
        deep = "[" * depth + "]" * depth
        for service, path, headers in json_routes(platform):
            for body in (deep, '{"recipient": ' + deep + "}", '{"metadata": {"a": ' + deep + "}}"):
                reply = await platform[service].post(
                    path, content=body.encode(), headers=headers | {"content-type": "application/json"}
                )
                assert_problem(reply, 400, 413, 422)


async def test_batches_over_a_thousand_are_refused_whole(platform: Any) -> None:
    orders = [platform.order_body() for _ in range(1001)]
    reply = await platform["order-intake"].post(
        "/v1/orders/batch", json={"orders": orders}, headers=platform.merchant_a
    )
    assert_problem(reply, 413, 422)
    listed = await platform["order-intake"].get(
        "/v1/orders", params={"limit": 10}, headers=platform.merchant_a
    )
    assert listed.json()["items"] == [], "nothing of the refused batch was stored"
    ping = {"lat": 52.52, "lon": 13.40, "recorded_at": platform.clock.now().isoformat()}
    reply = await platform["tracker"].post(
        "/v1/pings", json={"pings": [ping] * 1001}, headers=platform.driver(0)
    )
    assert_problem(reply, 413, 422)


async def test_invalid_utf8_and_lone_surrogates_are_refused(platform: Any) -> None:
    valid = json.dumps(platform.order_body()).encode()
    bodies = [
        valid.replace(b"Ada Lovelace", b"Ada \xff\xfe Lovelace"),  # not UTF-8
        valid.replace(b"Ada Lovelace", b"Ada \xed\xa0\x80 Lovelace"),  # a surrogate encoded in UTF-8
        valid.replace(b"Ada Lovelace", b"Ada \\ud800 Lovelace"),  # a lone surrogate as a JSON escape
        valid.replace(b"Ada Lovelace", b"Ada \\udc00\\ud800 Lovelace"),  # a reversed pair
        b"\xef\xbb\xbf" + valid[:-1],  # a byte-order mark and a truncated document
        valid.replace(b"Ada Lovelace", b"Ada \x00 Lovelace"),  # a raw control character
    ]
    for service, path, headers in json_routes(platform):
        for body in bodies:
            reply = await platform[service].post(
                path, content=body, headers=headers | {"content-type": "application/json"}
            )
            assert_problem(reply, 400, 422)
    for path in ("/v1/orders", "/v1/orders/batch"):
        for body in bodies:
            if path.endswith("batch"):
                body = b'{"orders": [' + body + b"]}"
            reply = await platform["order-intake"].post(
                path, content=body, headers=platform.merchant_a | {"content-type": "application/json"}
            )
            if reply.status_code == 200:  # a batch answers per order
                assert reply.json()["items"][0]["problem"]["status"] in (400, 422), reply.text
            else:
                assert_problem(reply, 400, 422)
    # the path and query too
    reply = await platform["order-intake"].get("/v1/orders/%ff%fe", headers=platform.merchant_a)
    assert_problem(reply, 404)
    reply = await platform["order-intake"].get("/v1/orders?reference=%ed%a0%80", headers=platform.merchant_a)
    assert reply.status_code in (200, 422), reply.text
    reply = await platform["tracker"].get("/v1/track/%ff%fe%ed%a0%80")
    assert_problem(reply, 404)


INJECTIONS = [
    "'; DROP TABLE orders; --",
    '" OR 1=1 --',
    "Robert'); DELETE FROM api_keys WHERE ('1'='1",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "{{7*7}} ${7*7} $merchant",
    "Ünïcødé 🚚 ‮reversed",
]


async def test_injection_strings_in_every_string_field_are_stored_verbatim_and_escaped_where_shown(
    start_platform: Any,
) -> None:
    evil_merchant = "Bad <b>Shop</b> & \"Co\" <script>alert('m')</script>"
    async with start_platform() as p:
        created = await p["order-intake"].post("/v1/merchants", json={"name": evil_merchant}, headers=p.ops)
        assert created.status_code == 201, created.text
        merchant = p.bearer(created.json()["api_key"])
        await p.settle()
        orders = []
        for n, evil in enumerate(INJECTIONS):
            body = p.order_body()
            body["recipient"]["name"] = evil
            body["destination"].update(
                address_lines=[evil, f"{evil} 2"], postal_code=evil[:20], city=evil[:100]
            )
            body["destination"]["access_notes"] = evil
            body["metadata"] = {"note": evil, evil[:40]: "key"}
            reply = await p["order-intake"].post("/v1/orders", json=body, headers=merchant)
            assert reply.status_code == 201, (n, reply.text)
            stored = (
                await p["order-intake"].get(f"/v1/orders/{reply.json()['id']}", headers=merchant)
            ).json()
            assert stored["recipient"]["name"] == evil
            assert stored["destination"]["address_lines"] == [evil, f"{evil} 2"]
            assert stored["destination"]["city"] == evil[:100]
            assert stored["metadata"] == {"note": evil, evil[:40]: "key"}
            orders.append((reply.json(), evil))
        # the stores are intact (no statement was cut short or added to)
        listed = (await p["order-intake"].get("/v1/orders", params={"limit": 50}, headers=merchant)).json()
        assert len(listed["items"]) == len(INJECTIONS)
        assert (await p["order-intake"].get("/v1/orders", headers=p.merchant_a)).status_code == 200
        await p.wait_status([_Order(o["id"], merchant) for o, _ in orders], "scheduled", headers=merchant)
        for order, _ in orders:
            await p.deliver(_Order(order["id"], merchant))
        await p.settle()

        # the tracking page: merchant's and customer's text escaped, never raw
        for order, evil in orders:
            page = (await p["tracker"].get(order["tracking_url"].removeprefix("http://tracker.test"))).text
            assert escaped_in(evil_merchant, page)
            _no_raw_markup(page, evil_merchant)
            assert escaped_in(evil, page), "the address is shown, escaped"
            _no_raw_markup(page, evil)

        # the emails: the HTML part escapes, the subject and text are plain text
        emails = [m for m in p.messages() if m["channel"] == "email"]
        assert len(emails) >= len(INJECTIONS)
        for message in emails:
            assert escaped_in(evil_merchant, message["html"])
            _no_raw_markup(message["html"], evil_merchant)
            for evil in INJECTIONS:
                _no_raw_markup(message["html"], evil)


def escaped_in(text: str, page: str) -> bool:
    """`text` is in `page` HTML-escaped (by the standard library's or Jinja's rules, which spell quotes apart)."""
    return html.escape(text) in page or str(markupsafe.escape(text)) in page


def _no_raw_markup(text: str, evil: str) -> None:
    for tag in ("<script", "<img", "<svg", "<b>"):
        if tag in evil:
            fragment = evil[evil.index(tag) :][:12]
            assert fragment not in text, f"{fragment!r} reflected unescaped"


class _Order:
    def __init__(self, id_: str, headers: dict[str, str]) -> None:
        self.id, self.headers = id_, headers


COORDINATES_OK = [(90, 0), (-90, 0), (0, 180), (0, -180), (90, 180), (-90, -180)]
COORDINATES_BAD = [(90.0001, 0), (-90.0001, 0), (0, 180.0001), (0, -180.0001), (91, 181), (1e308, 0)]


async def test_coordinates_at_the_poles_and_the_antimeridian_pass_and_beyond_them_do_not(
    platform: Any,
) -> None:
    intake, planner, tracker = platform["order-intake"], platform["planner"], platform["tracker"]
    for lat, lon in COORDINATES_OK:
        body = platform.order_body(destination={"lat": lat, "lon": lon})
        reply = await intake.post("/v1/orders", json=body, headers=platform.merchant_a)
        # valid coordinates: accepted where a depot serves them (the ones created below; (0, 180) and
        # (0, -180) are one place), else refused for that reason, never for the coordinates
        if reply.status_code != 201:
            problem = assert_problem(reply, 422)
            pointers = {e["pointer"] for e in problem.get("errors") or []}
            assert not pointers & {"#/destination/lat", "#/destination/lon"}, problem
        depot = {"name": "Edge", "lat": lat, "lon": lon, "timezone": "UTC"}
        assert (await planner.post("/v1/depots", json=depot, headers=platform.ops)).status_code == 201
        ping = {"lat": lat, "lon": lon, "recorded_at": platform.clock.now().isoformat()}
        counts = (await tracker.post("/v1/pings", json={"pings": [ping]}, headers=platform.driver(1))).json()
        assert not counts.keys() & {"out_of_range", "invalid"}, counts
    for lat, lon in COORDINATES_BAD:
        body = platform.order_body(destination={"lat": lat, "lon": lon})
        problem = assert_problem(await intake.post("/v1/orders", json=body, headers=platform.merchant_a), 422)
        assert {e["pointer"] for e in problem["errors"]} & {"#/destination/lat", "#/destination/lon"}
        batch = await intake.post("/v1/orders/batch", json={"orders": [body]}, headers=platform.merchant_a)
        assert batch.json()["items"][0]["problem"]["status"] == 422, batch.text
        depot = {"name": "Beyond", "lat": lat, "lon": lon, "timezone": "UTC"}
        assert_problem(await planner.post("/v1/depots", json=depot, headers=platform.ops), 422)
        ping = {"lat": lat, "lon": lon, "recorded_at": platform.clock.now().isoformat()}
        reply = await tracker.post("/v1/pings", json={"pings": [ping]}, headers=platform.driver(1))
        assert reply.status_code == 202, reply.text
        assert reply.json() == {"out_of_range": 1}, reply.text
    # not numbers at all
    for value in ("NaN", "Infinity", "-Infinity", '"north"', "null", "1e999", "[52]"):
        raw = json.dumps(platform.order_body()).replace('"lat": 52.5208', f'"lat": {value}')
        reply = await intake.post(
            "/v1/orders",
            content=raw.encode(),
            headers=platform.merchant_a | {"content-type": "application/json"},
        )
        assert_problem(reply, 400, 422)
