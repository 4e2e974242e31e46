"""The customer's tracking page and its JSON: what it shows, what it hides, when it stops working."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lastmile.common import events as ev
from lastmile.common.testing import eventually, ops_headers

DEST = (48.14, 11.58)


def stops_to(customer: str, before: int) -> list[tuple[str, float, float]]:
    """`before` other customers' stops (a kilometre apart, south of ours), then the customer's."""
    others = [(f"other_{k}", DEST[0] - (before - k) * 0.009, DEST[1]) for k in range(before)]
    return [*others, (customer, *DEST)]


async def ping(tracker: Any, lat: float, lon: float, seconds_ago: float = 0) -> None:
    at = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    reply = await tracker.client.post(
        "/v1/pings", json={"pings": [{"lat": lat, "lon": lon, "recorded_at": at}]}, headers=tracker.driver
    )
    assert reply.status_code == 202, reply.text


async def test_the_page_escapes_what_merchants_and_customers_wrote(
    tracker: Any, make_order: Any, make_route: Any
) -> None:
    order, token = make_order("ord_c", *DEST, merchant="<script>alert('x')</script> & Co", reference='R"1<b>')
    await tracker.publish(order)
    await tracker.publish(make_route("veh_1", stops_to("ord_c", 1), start=(DEST[0] - 0.02, DEST[1])))
    reply = await tracker.client.get(f"/track/{token}")
    assert reply.status_code == 200
    html = reply.text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co" in html
    assert "R&#34;1&lt;b&gt;" in html
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'nonce-" in policy
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["cache-control"] == "no-store"
    initial = html.split('<script type="application/json" id="initial">', 1)[1].split("</script>", 1)[0]
    assert "<" not in initial  # the embedded JSON cannot close its script element
    assert json.loads(initial)["merchant"] == "<script>alert('x')</script> & Co"


async def test_a_wrong_token_gets_a_plain_404_page(tracker: Any) -> None:
    reply = await tracker.client.get("/track/not-a-token")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("text/html")
    assert "Tracking link not found" in reply.text
    assert (await tracker.client.get("/v1/track/not-a-token")).status_code == 404


async def test_the_vehicle_shows_only_once_the_customers_stop_is_near(
    tracker: Any, make_order: Any, make_route: Any
) -> None:
    order, token = make_order("ord_c", *DEST)
    await tracker.publish(order)
    await tracker.publish(make_route("veh_1", stops_to("ord_c", 4), start=(DEST[0] - 0.05, DEST[1])))
    await ping(tracker, DEST[0] - 0.045, DEST[1])
    await tracker.settle()
    view = (await tracker.client.get(f"/v1/track/{token}")).json()
    assert view["status"] == "out_for_delivery"
    assert view["stops_before"] == 4
    assert view["vehicle"] is None
    assert view["map"]["vehicle_x"] is None
    assert view["eta"] is not None
    for k in range(3):  # the driver delivers three of the others
        reply = await tracker.client.post(
            f"/v1/stops/other_{k}/complete", json={"outcome": "delivered"}, headers=tracker.driver
        )
        assert reply.status_code == 200
    await ping(tracker, DEST[0] - 0.01, DEST[1])
    await tracker.settle()
    view = (await tracker.client.get(f"/v1/track/{token}")).json()
    assert view["stops_before"] == 1
    assert view["vehicle"]["direction"] == "south"
    assert set(view) >= {"timeline", "promised_window", "eta", "map", "address"}
    assert "other_3" not in json.dumps(view)  # nothing of other customers


async def test_the_link_expires_after_delivery_and_the_grace_period(
    start_tracker: Any, make_order: Any, make_route: Any
) -> None:
    async with start_tracker(tracking_grace_s=0) as tracker:
        order, token = make_order("ord_c", *DEST)
        await tracker.publish(order)
        await tracker.publish(make_route("veh_1", stops_to("ord_c", 0)))
        assert (await tracker.client.get(f"/track/{token}")).status_code == 200
        done = await tracker.client.post(
            "/v1/stops/ord_c/complete", json={"outcome": "delivered"}, headers=tracker.driver
        )
        assert done.status_code == 200
        assert (await tracker.client.get(f"/track/{token}")).status_code == 404


async def test_updates_stream_as_server_sent_events(
    live_tracker: Any, make_order: Any, make_route: Any
) -> None:
    tracker = live_tracker
    order, token = make_order("ord_c", *DEST)
    await tracker.publish(order)
    await tracker.publish(make_route("veh_1", stops_to("ord_c", 1), start=(DEST[0] - 0.02, DEST[1])))
    updates: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=tracker.base_url, timeout=30) as http,
        http.stream("GET", f"/track/{token}/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()

        async def next_update() -> dict[str, Any]:
            event = None
            async for line in lines:
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "update":
                    return dict(json.loads(line.split(":", 1)[1]))
            raise AssertionError("the stream ended")

        updates.append(await next_update())
        assert updates[0]["status"] == "scheduled"
        await ping(tracker, DEST[0] - 0.015, DEST[1])
        updates.append(await next_update())
        while updates[-1]["vehicle"] is None:
            updates.append(await next_update())
    assert updates[-1]["status"] == "out_for_delivery"
    assert updates[-1]["vehicle"]["direction"] == "south"


async def test_ops_see_the_fleet_and_its_live_feed(live_tracker: Any) -> None:
    tracker = live_tracker
    await ping(tracker, 48.1, 11.5, seconds_ago=60)
    fleet = (await tracker.client.get("/v1/vehicles", headers=ops_headers())).json()
    assert [(v["vehicle_id"], v["lat"]) for v in fleet] == [("veh_1", 48.1)]
    assert (await tracker.client.get("/v1/vehicles")).status_code == 401
    async with httpx.AsyncClient(base_url=tracker.base_url, timeout=30) as http:
        async with http.stream("GET", "/v1/vehicles/stream", headers=ops_headers()) as stream:
            lines = stream.aiter_lines()
            await ping(tracker, 48.101, 11.5)
            async for line in lines:
                if line.startswith("data:") and "48.101" in line:
                    break
        assert (await http.get("/v1/vehicles/stream")).status_code == 401


async def test_cancelled_orders_say_so(tracker: Any, make_order: Any) -> None:
    order, token = make_order("ord_c", *DEST)
    await tracker.publish(order)
    now = datetime.now(UTC)
    await tracker.publish(
        ev.OrderCancelled(
            order_id="ord_c", version=2, merchant_id="mer_1", depot_id="dep_1", cancelled_at=now
        )
    )
    view = await eventually(lambda: tracker.client.get(f"/v1/track/{token}"))
    assert view.json()["status"] == "cancelled"
