"""The customer's tracking link: unguessable, one order's only, gone some time after delivery, and it shows
neither other customers' stops nor the driver's whereabouts until the customer's stop is close."""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

import pytest

from lastmile.order_intake import handlers_orders

pytestmark = pytest.mark.security

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def shows(number: str, text: str) -> bool:
    """Whether `number` starts a number of its own in `text`: a timestamp's fraction of a second ("08:00:00.410110")
    may hold any digits and is not a leak."""
    return re.search(rf"(?<![\d:.]){re.escape(number)}", text) is not None


def test_the_token_generator_draws_at_least_128_bits_from_the_system_random_source() -> None:
    source = inspect.getsource(handlers_orders)
    generators = re.findall(r"tracking_token=([^,\n]+)", source)
    assert generators == ["secrets.token_urlsafe(24)"], generators  # 24 bytes of os.urandom: 192 bits


async def test_tracking_tokens_are_long_random_url_safe_and_distinct(platform: Any) -> None:
    orders = [await platform.create_order() for _ in range(20)]
    tokens = [o.token for o in orders]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert URL_SAFE.fullmatch(token), token
        assert len(token) * math.log2(64) >= 128, token  # each character carries 6 bits
    # no shared prefix or suffix that would make them less random than they look
    assert len({t[:4] for t in tokens}) > 15
    assert len({t[-4:] for t in tokens}) > 15


async def test_a_token_opens_its_own_order_only(platform: Any) -> None:
    first, second = await platform.create_order(), await platform.create_order(headers=platform.merchant_b)
    await platform.settle()
    tracker = platform["tracker"]
    for order, other in ((first, second), (second, first)):
        view = (await tracker.get(f"/v1/track/{order.token}")).json()
        assert view["reference"] == order.body["reference"]
        page = (await tracker.get(f"/track/{order.token}")).text
        assert order.body["reference"] in page
        assert other.body["reference"] not in page
        assert other.body["reference"] not in str(view)
    # the token in the URL leaks through no referrer, cache or frame, and the page runs only its own script
    reply = await tracker.get(f"/track/{first.token}")
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["Cache-Control"] == "no-store"
    policy = reply.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    # a token one character off, cut short, or with more after it opens nothing
    token = first.token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for guess in (flipped, token[:-1], token + "A", token.upper(), "x" * 32, "../" + token):
        assert (await tracker.get(f"/v1/track/{guess}")).status_code == 404, guess
        assert (await tracker.get(f"/track/{guess}")).status_code == 404, guess
    # the order's id is not a token
    assert (await tracker.get(f"/v1/track/{first.id}")).status_code == 404


async def test_the_link_expires_a_grace_period_after_delivery(platform: Any) -> None:
    grace = platform.apps["tracker"].state.deps.settings.tracking_grace_s
    assert 0 < grace <= 30 * 24 * 3600, "a link that outlives its delivery by more than a month is a leak"
    [order] = await platform.flow(1)
    tracker = platform["tracker"]
    assert (await tracker.get(f"/v1/track/{order.token}")).json()["status"] == "delivered"
    platform.clock.advance(grace - 120)
    assert (await tracker.get(f"/v1/track/{order.token}")).status_code == 200
    assert (await tracker.get(f"/track/{order.token}")).status_code == 200
    platform.clock.advance(240)
    assert (await tracker.get(f"/v1/track/{order.token}")).status_code == 404
    page = await tracker.get(f"/track/{order.token}")
    assert page.status_code == 404
    assert order.body["reference"] not in page.text


async def test_the_link_of_a_cancelled_order_expires_too(platform: Any) -> None:
    grace = platform.apps["tracker"].state.deps.settings.tracking_grace_s
    order = await platform.create_order()
    reply = await platform["order-intake"].post(f"/v1/orders/{order.id}/cancel", headers=platform.merchant_a)
    assert reply.status_code == 200, reply.text
    await platform.settle()
    tracker = platform["tracker"]
    assert (await tracker.get(f"/v1/track/{order.token}")).json()["status"] == "cancelled"
    platform.clock.advance(grace + 60)
    assert (await tracker.get(f"/v1/track/{order.token}")).status_code == 404


async def test_the_page_shows_neither_other_stops_nor_the_driver_until_the_stop_is_among_the_next_few(
    start_platform: Any,
) -> None:
    # the vehicle is shown only to the next stop (tracking_map_stops=1), so a route of 3 stops has hidden ones
    async with start_platform(tracker={"tracking_map_stops": 1}) as p:
        orders = []
        for n in range(8):
            destination = {
                "lat": 52.5208 + n * 0.003,
                "lon": 13.4095 + n * 0.002,
                "address_lines": [f"Secretstraße {n + 11}"],
                "postal_code": f"1011{n}",
                "city": "Berlin",
            }
            orders.append(await p.create_order(destination=destination))
        await p.wait_status(orders, "scheduled")
        routes = {}
        for order in orders:
            routes.setdefault((await p.tracker_route(order))["vehicle_id"], []).append(order)
        van, on_route = max(routes.items(), key=lambda kv: len(kv[1]))
        assert len(on_route) >= 3, "one van has a route of at least three stops"
        # the driver, somewhere distinctive near the first stops
        where = (52.51937, 13.40811)
        reply = await p.ping(p.device_of(van), *where)
        assert reply.status_code == 202, reply.text
        await p.wait_status(on_route, "out_for_delivery")
        await p.settle()

        tracker = p["tracker"]
        shown = hidden = 0
        for order in on_route:
            view = (await tracker.get(f"/v1/track/{order.token}")).json()
            page = (await tracker.get(f"/track/{order.token}")).text
            seen = page + str(view)
            for other in orders:
                if other is order:
                    continue
                d = other.body["destination"]
                assert d["address_lines"][0] not in seen, "another customer's address"
                assert not shows(d["postal_code"], seen), "another customer's postal code"
                assert not shows(f"{d['lat']:.4f}", seen), "another customer's stop on the map"
                assert other.body["reference"] not in seen
            # never the driver's coordinates, only distance and direction relative to the customer's address
            assert not shows(f"{where[0]:.4f}", seen)
            assert not shows(f"{where[1]:.4f}", seen)
            # never the route: no stop list, no path
            assert "stops" not in view
            assert "route" not in str(view).lower()
            assert "<polyline" not in page
            if view["stops_before"] is not None and view["stops_before"] >= 1:
                hidden += 1
                assert view["vehicle"] is None
                assert view["map"]["vehicle_x"] is None
                assert "The driver is" not in page
            else:
                shown += 1
                assert view["vehicle"] is not None, view
        assert hidden >= 1
        assert shown >= 1, "the next stop's customer sees the driver (so the hidden ones prove something)"
