"""Routes in, pings and stop results through the API, delivery events out."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from lastmile.common.testing import eventually, ops_headers

NOW = datetime.now(UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def ping(minutes: float = 0, lat: float = 52.521, **more: Any) -> dict[str, Any]:
    return {"lat": lat, "lon": 13.401, "recorded_at": (NOW + timedelta(minutes=minutes)).isoformat(), **more}


def stops(*orders: str) -> list[tuple[str, float, float]]:
    return [(o, 52.53 + i / 100, 13.41) for i, o in enumerate(orders)]


class TestPings:
    async def test_the_first_ping_sends_the_route_out_for_delivery(
        self, tracker: Any, make_route: Any
    ) -> None:
        await tracker.publish(make_route("veh_1", stops("ord_a", "ord_b"), start=(52.52, 13.40)))
        reply = await tracker.client.post("/v1/pings", json={"pings": [ping()]}, headers=tracker.driver)
        assert reply.status_code == 202
        assert reply.json() == {"ok": 1}
        await eventually(lambda: len(tracker.events("lastmile.delivery.out_for_delivery")) == 2)
        located = tracker.bus.envelopes("locations.v1")
        assert [e.data["vehicle_id"] for e in located] == ["veh_1"]

    async def test_each_ping_gets_one_outcome_and_bad_ones_do_not_sink_the_batch(self, tracker: Any) -> None:
        pings = [
            ping(0),
            ping(0),
            ping(60 * 24),
            ping(-60 * 48),
            ping(1, lat=95),
            {"lat": "north", "lon": 13.4},
            ping(2, lat=0, lon=0) | {"lon": 0},
        ]
        reply = await tracker.client.post("/v1/pings", json={"pings": pings}, headers=tracker.driver)
        assert reply.status_code == 202
        assert reply.json() == {
            "ok": 1,
            "duplicate": 1,
            "future": 1,
            "too_old": 1,
            "out_of_range": 1,
            "invalid": 1,
            "no_fix": 1,
        }
        again = await tracker.client.post("/v1/pings", json={"pings": [ping(0)]}, headers=tracker.driver)
        assert again.json() == {"duplicate": 1}  # a retried request is absorbed
        metrics = (await tracker.client.get("/metrics")).text
        assert 'lastmile_tracker_pings_rejected_total{reason="too_old"} ' in metrics

    async def test_a_late_ping_is_stored_but_never_moves_the_vehicle_back(self, tracker: Any) -> None:
        await tracker.client.post("/v1/pings", json={"pings": [ping(0, lat=52.521)]}, headers=tracker.driver)
        late = await tracker.client.post(
            "/v1/pings", json={"pings": [ping(-1, lat=52.5205)]}, headers=tracker.driver
        )
        assert late.json() == {"late": 1}
        position = (await tracker.client.get("/v1/vehicles/veh_1/position", headers=ops_headers())).json()
        assert position["lat"] == 52.521
        since = (NOW - timedelta(minutes=5)).isoformat()
        track = await tracker.client.get(
            "/v1/vehicles/veh_1/track", params={"since": since}, headers=ops_headers()
        )
        assert [p["lat"] for p in track.json()] == [52.5205, 52.521]

    async def test_an_impossible_jump_is_kept_but_flagged_and_not_the_live_position(
        self, tracker: Any
    ) -> None:
        first, jump = ping(0), ping(1 / 60, lat=52.531)  # 1.1 km in one second
        reply = await tracker.client.post("/v1/pings", json={"pings": [first, jump]}, headers=tracker.driver)
        assert reply.json() == {"ok": 1, "suspect": 1}
        located = await eventually(
            lambda: len(tracker.bus.envelopes("locations.v1")) == 2 and tracker.bus.envelopes("locations.v1")
        )
        assert [e.data["suspect"] for e in located] == [False, True]
        position = (await tracker.client.get("/v1/vehicles/veh_1/position", headers=ops_headers())).json()
        assert position["lat"] == 52.521

    async def test_a_batch_too_large_is_refused_whole(self, tracker: Any) -> None:
        pings = [ping(-k / 60) for k in range(1001)]
        reply = await tracker.client.post("/v1/pings", json={"pings": pings}, headers=tracker.driver)
        assert reply.status_code == 422
        assert reply.json()["code"] == "batch-too-large"

    async def test_a_revoked_device_is_refused(self, tracker: Any) -> None:
        reply = await tracker.client.delete(f"/v1/devices/{tracker.device['id']}", headers=ops_headers())
        assert reply.status_code == 204
        refused = await tracker.client.post("/v1/pings", json={"pings": [ping()]}, headers=tracker.driver)
        assert refused.status_code == 401


class TestStops:
    async def test_a_completed_stop_is_delivered_with_proof(self, tracker: Any, make_route: Any) -> None:
        await tracker.publish(make_route("veh_1", stops("ord_a")))
        body = {
            "outcome": "delivered",
            "recipient_name": "Ada",
            "lat": 52.53,
            "lon": 13.41,
            "photo": {"content_base64": base64.b64encode(PNG).decode()},
        }
        reply = await tracker.client.post("/v1/stops/ord_a/complete", json=body, headers=tracker.driver)
        assert reply.status_code == 200, reply.text
        delivered = await eventually(lambda: tracker.events("lastmile.delivery.delivered"))
        proof = delivered[0].data["proof"]
        assert proof["recipient_name"] == "Ada"
        assert (proof["photo"], proof["signature"]) == (True, False)
        assert proof["location"] == {"lat": 52.53, "lon": 13.41}
        image = await tracker.client.get("/v1/stops/ord_a/proof/photo", headers=ops_headers())
        assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/png", PNG)
        assert (await tracker.client.get("/v1/stops/ord_a/proof/photo")).status_code == 401
        out = tracker.events("lastmile.delivery.out_for_delivery", "ord_a")
        assert len(out) == 1  # completing a stop starts the route: out for delivery came first
        again = await tracker.client.post("/v1/stops/ord_a/complete", json=body, headers=tracker.driver)
        assert again.status_code == 409

    async def test_a_failed_stop_needs_a_reason_and_an_image_must_be_one(
        self, tracker: Any, make_route: Any
    ) -> None:
        await tracker.publish(make_route("veh_1", stops("ord_a")))
        url = "/v1/stops/ord_a/complete"
        no_reason = await tracker.client.post(url, json={"outcome": "failed"}, headers=tracker.driver)
        assert no_reason.status_code == 422
        fake = {"outcome": "delivered", "signature": {"content_base64": base64.b64encode(b"<svg/>").decode()}}
        assert (await tracker.client.post(url, json=fake, headers=tracker.driver)).status_code == 422
        failed = {"outcome": "failed", "reason": "not_at_home", "note": "no answer"}
        assert (await tracker.client.post(url, json=failed, headers=tracker.driver)).status_code == 200
        event = (await eventually(lambda: tracker.events("lastmile.delivery.failed")))[0]
        assert (event.data["reason"], event.data["note"]) == ("not_at_home", "no answer")

    async def test_a_stop_on_another_vehicle_is_not_found(self, tracker: Any, make_route: Any) -> None:
        await tracker.publish(make_route("veh_2", stops("ord_z"), route_id="rte_2"))
        url = "/v1/stops/ord_z/complete"
        reply = await tracker.client.post(url, json={"outcome": "delivered"}, headers=tracker.driver)
        assert reply.status_code == 404

    async def test_a_stop_done_stays_done_when_a_late_plan_moves_it_to_another_vehicle(
        self, tracker: Any, make_route: Any
    ) -> None:
        """A re-plan moved the stop to veh_2 while veh_1's driver delivered it: the plan crossed the result."""
        await tracker.publish(make_route("veh_1", stops("ord_a", "ord_b")))
        done = await tracker.client.post(
            "/v1/stops/ord_a/complete", json={"outcome": "delivered"}, headers=tracker.driver
        )
        assert done.status_code == 200, done.text
        await tracker.publish(make_route("veh_2", stops("ord_a", "ord_c"), route_id="rte_2"))
        second = await tracker.add_device("veh_2")
        driver_2 = {"Authorization": f"Bearer {second['device_key']}"}
        started = await tracker.client.post("/v1/routes/rte_2/start", headers=driver_2)
        assert started.status_code == 200, started.text
        again = await tracker.client.post(
            "/v1/stops/ord_a/complete", json={"outcome": "delivered"}, headers=driver_2
        )
        assert again.status_code == 404  # not veh_2's to deliver: veh_1 did
        finished = await tracker.client.post("/v1/routes/rte_2/finish", headers=driver_2)
        assert finished.status_code == 200, finished.text
        await tracker.settle()
        assert [e.data["vehicle_id"] for e in tracker.events("lastmile.delivery.delivered")] == ["veh_1"]
        assert [e.data["order_id"] for e in tracker.events("lastmile.delivery.failed")] == ["ord_c"]
        out_2 = [e.data["order_id"] for e in tracker.events("lastmile.delivery.out_for_delivery")]
        assert out_2.count("ord_a") == 1  # once, with veh_1's route; never again with veh_2's


class TestRoutes:
    async def test_starting_sends_every_stop_out_and_finishing_fails_the_rest(
        self, tracker: Any, make_route: Any
    ) -> None:
        await tracker.publish(make_route("veh_1", stops("ord_a", "ord_b", "ord_c")))
        started = await tracker.client.post("/v1/routes/rte_1/start", headers=tracker.driver)
        assert started.json()["status"] == "started"
        await eventually(lambda: len(tracker.events("lastmile.delivery.out_for_delivery")) == 3)
        await tracker.client.post(
            "/v1/stops/ord_a/complete", json={"outcome": "delivered"}, headers=tracker.driver
        )
        finished = await tracker.client.post("/v1/routes/rte_1/finish", headers=tracker.driver)
        assert finished.json()["status"] == "done"
        failed = await eventually(
            lambda: (
                len(tracker.events("lastmile.delivery.failed")) == 2
                and tracker.events("lastmile.delivery.failed")
            )
        )
        assert sorted(e.data["order_id"] for e in failed) == ["ord_b", "ord_c"]
        assert {e.data["reason"] for e in failed} == {"other"}
        assert (
            await tracker.client.post("/v1/routes/rte_1/start", headers=tracker.driver)
        ).status_code == 409

    async def test_another_vehicles_route_is_not_found(self, tracker: Any, make_route: Any) -> None:
        await tracker.publish(make_route("veh_2", stops("ord_z"), route_id="rte_2"))
        assert (
            await tracker.client.post("/v1/routes/rte_2/start", headers=tracker.driver)
        ).status_code == 404


async def test_completed_stops_count_as_on_time_only_inside_their_promised_window(
    tracker: Any, make_route: Any
) -> None:
    from prometheus_client import REGISTRY

    from lastmile.common import events as ev

    planned = make_route("veh_1", stops("ord_now", "ord_later"))
    windows = [
        (NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        (NOW + timedelta(hours=5), NOW + timedelta(hours=6)),
    ]
    route_stops = [
        s.model_copy(update={"promised_window": ev.TimeWindow(start=w[0], end=w[1])})
        for s, w in zip(planned.stops, windows, strict=True)
    ]
    await tracker.publish(planned.model_copy(update={"stops": route_stops}))

    def count(on_time: str) -> float:
        labels = {"outcome": "delivered", "on_time": on_time}
        return REGISTRY.get_sample_value("lastmile_tracker_stops_completed_total", labels) or 0.0

    def eta_errors() -> float:
        return REGISTRY.get_sample_value("lastmile_tracker_eta_error_seconds_count") or 0.0

    before = (count("true"), count("false"), eta_errors())
    for order in ("ord_now", "ord_later"):
        reply = await tracker.client.post(
            f"/v1/stops/{order}/complete", json={"outcome": "delivered"}, headers=tracker.driver
        )
        assert reply.status_code == 200, reply.text
    assert (count("true"), count("false"), eta_errors()) == (before[0] + 1, before[1] + 1, before[2] + 2)


async def test_positions_older_than_the_retention_period_are_purged(start_tracker: Any) -> None:
    async with start_tracker(position_retention_s=3600) as tracker:
        reply = await tracker.client.post(
            "/v1/pings", json={"pings": [ping(-2), ping(-1)]}, headers=tracker.driver
        )
        assert reply.json() == {"ok": 2}
        housekeeper = tracker.app.state.housekeeper
        assert await housekeeper.purge() == 0  # received just now: kept
        housekeeper.settings = housekeeper.settings.model_copy(update={"position_retention_s": 0})
        assert await housekeeper.purge() == 2
        since = (NOW - timedelta(hours=1)).isoformat()
        track = await tracker.client.get(
            "/v1/vehicles/veh_1/track", params={"since": since}, headers=ops_headers()
        )
        assert track.json() == []
        position = await tracker.client.get("/v1/vehicles/veh_1/position", headers=ops_headers())
        assert position.status_code == 200  # the live position is not history: it stays
