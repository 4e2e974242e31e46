from typing import Any

from lastmile.common import events as ev
from lastmile.common.testing import eventually, ops_headers


class TestCreateOrder:
    async def test_accepts_the_minimal_order_and_publishes_it_once(self, intake: Any, an_order: Any) -> None:
        reply = await intake.client.post("/v1/orders", json=an_order(), headers=intake.headers)
        assert reply.status_code == 201, reply.text
        order = reply.json()
        assert order["status"] == "received"
        assert order["depot_id"] == "dep_berlin"
        assert order["version"] == 1
        created = await eventually(lambda: intake.events("lastmile.order.created"))
        assert [e.subject for e in created] == [order["id"]]
        assert created[0].data["depot_id"] == "dep_berlin"

    async def test_keeps_every_field_the_merchant_gave(self, intake: Any, an_order: Any) -> None:
        full = an_order(
            kind="return",
            recipient={
                "name": "Ada",
                "phone": "+447700900123",
                "email": "ada@example.com",
                "language": "de-DE",
                "channels": ["email"],
            },
            destination={
                "lat": 52.5208,
                "lon": 13.4095,
                "address_lines": ["Alexanderplatz 1"],
                "postal_code": "10178",
                "city": "Berlin",
                "country": "DE",
                "location_type": "pickup_point",
                "pickup_point_id": "pp-7",
                "access_notes": "Locker 12",
            },
            parcels=[{"count": 2, "weight_kg": 3.5, "volume_l": 20}],
            service_time_s=300,
            priority=7,
            skills=["cold_chain", "id_check"],
            ready_at="2030-12-02T09:30:00+01:00",
            metadata={"shop": "north", "basket": 3, "gift": True},
        )
        order = await intake.create(full)
        for name in ("reference", "kind", "parcels", "service_time_s", "priority", "skills", "metadata"):
            assert order[name] == full[name], name
        assert order["recipient"] == {**full["recipient"], "timezone": "Europe/Berlin"}
        assert order["destination"] == full["destination"]
        assert order["ready_at"] == "2030-12-02T09:30:00+01:00"  # kept with its offset
        event = (await eventually(lambda: intake.events("lastmile.order.created")))[0].data
        assert event["kind"] == "return"
        assert event["recipient"]["channels"] == ["email"]
        assert event["destination"]["pickup_point_id"] == "pp-7"
        assert event["skills"] == ["cold_chain", "id_check"]
        assert (await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)).json() == order

    async def test_channels_default_to_the_contacts_given(self, intake: Any, an_order: Any) -> None:
        order = await intake.create(an_order(recipient={"name": "Ada", "email": "ada@example.com"}))
        assert order["recipient"]["channels"] == ["email"]

    async def test_a_duplicate_reference_is_a_conflict(self, intake: Any, an_order: Any) -> None:
        order = an_order()
        first = await intake.create(order)
        reply = await intake.client.post("/v1/orders", json=order, headers=intake.headers)
        assert reply.status_code == 409
        assert reply.json()["code"] == "duplicate-reference"
        assert reply.json()["errors"] == [
            {"pointer": "#/reference", "detail": f"already used by {first['id']}"}
        ]
        await eventually(lambda: intake.events())
        assert len(intake.events()) == 1

    async def test_two_merchants_may_use_the_same_reference(self, intake: Any, an_order: Any) -> None:
        order = an_order()
        await intake.create(order)
        other = await intake.new_merchant()
        assert (await intake.client.post("/v1/orders", json=order, headers=other)).status_code == 201


class TestDepotChoice:
    FAR = ev.DepotUpserted(
        depot_id="dep_potsdam",
        name="Potsdam",
        location=ev.GeoPoint(lat=52.39, lon=13.06),
        timezone="Europe/Berlin",
        service_radius_km=40,
    )
    AREA = ev.DepotUpserted(
        depot_id="dep_area",
        name="Munich, by area",
        location=ev.GeoPoint(lat=48.14, lon=11.58),
        timezone="Europe/Berlin",
        service_radius_km=1,
        service_area=[
            ev.GeoPoint(lat=lat, lon=lon)
            for lat, lon in ((48.0, 11.4), (48.0, 11.8), (48.3, 11.8), (48.3, 11.4))
        ],
    )

    async def test_picks_the_nearest_depot_whose_area_holds_the_destination(
        self, make_intake: Any, an_order: Any
    ) -> None:
        intake = await make_intake(depots=(ev_depot(), self.FAR))
        near_berlin = await intake.create(an_order())
        assert near_berlin["depot_id"] == "dep_berlin"
        # 30 km west of Berlin: outside Berlin's 15 km, inside Potsdam's 40 km
        west = await intake.create(an_order(destination={"lat": 52.45, "lon": 12.95}))
        assert west["depot_id"] == "dep_potsdam"

    async def test_a_polygon_service_area_wins_over_the_radius(self, make_intake: Any, an_order: Any) -> None:
        intake = await make_intake(depots=(ev_depot(), self.AREA))
        order = await intake.create(
            an_order(destination={"lat": 48.25, "lon": 11.45})
        )  # 12 km from the depot
        assert order["depot_id"] == "dep_area"
        reply = await intake.client.post(
            "/v1/orders", json=an_order(destination={"lat": 48.35, "lon": 11.58}), headers=intake.headers
        )
        assert reply.json()["code"] == "no-depot"

    async def test_honours_a_requested_depot(self, make_intake: Any, an_order: Any) -> None:
        intake = await make_intake(depots=(ev_depot(), self.FAR))
        assert (await intake.create(an_order(depot_id="dep_potsdam")))["depot_id"] == "dep_potsdam"

    async def test_refuses_an_unknown_depot(self, intake: Any, an_order: Any) -> None:
        reply = await intake.client.post(
            "/v1/orders", json=an_order(depot_id="dep_nowhere"), headers=intake.headers
        )
        assert reply.status_code == 422
        assert reply.json()["code"] == "no-depot"

    async def test_refuses_a_destination_no_depot_serves(self, intake: Any, an_order: Any) -> None:
        reply = await intake.client.post(
            "/v1/orders", json=an_order(destination={"lat": 48.1, "lon": 11.6}), headers=intake.headers
        )
        assert reply.status_code == 422
        assert reply.json()["code"] == "no-depot"

    async def test_a_new_depot_serves_at_once(self, intake: Any, an_order: Any) -> None:
        munich = {"destination": {"lat": 48.14, "lon": 11.58}}
        assert (
            await intake.client.post("/v1/orders", json=an_order(**munich), headers=intake.headers)
        ).status_code == 422
        await intake.publish(self.AREA)
        assert (await intake.create(an_order(**munich)))["depot_id"] == "dep_area"


def ev_depot() -> ev.DepotUpserted:
    return ev.DepotUpserted(
        depot_id="dep_berlin",
        name="Berlin Mitte",
        location=ev.GeoPoint(lat=52.52, lon=13.40),
        timezone="Europe/Berlin",
        service_radius_km=15,
    )


class TestAuth:
    async def test_without_a_key_is_401(self, intake: Any, an_order: Any) -> None:
        reply = await intake.client.post("/v1/orders", json=an_order())
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")

    async def test_an_unknown_key_is_401(self, intake: Any) -> None:
        reply = await intake.client.get("/v1/orders", headers={"Authorization": "Bearer lm_live_nope"})
        assert reply.status_code == 401

    async def test_ops_routes_need_the_ops_token(self, intake: Any) -> None:
        reply = await intake.client.post("/v1/merchants", json={"name": "X"}, headers=intake.headers)
        assert reply.status_code == 401

    async def test_another_merchants_order_is_not_found_on_every_route(
        self, intake: Any, an_order: Any
    ) -> None:
        created = await intake.create()
        other = await intake.new_merchant()
        path = f"/v1/orders/{created['id']}"
        for method, url, body in (
            ("GET", path, None),
            ("GET", path + "/history", None),
            ("GET", path + "/tracking", None),
            ("PATCH", path, {"recipient": {"name": "Mallory"}}),
            ("POST", path + "/cancel", {}),
        ):
            reply = await intake.client.request(method, url, json=body, headers=other)
            assert reply.status_code == 404, (method, url, reply.text)
        listed = (await intake.client.get("/v1/orders", headers=other)).json()
        assert listed["items"] == []
        mine = (await intake.client.get(path, headers=intake.headers)).json()
        assert mine["version"] == 1
        assert mine["status"] == "received"

    async def test_a_revoked_key_is_refused_at_once(self, intake: Any) -> None:
        key = (
            await intake.client.post(
                f"/v1/merchants/{intake.merchant_id}/keys", json={}, headers=ops_headers()
            )
        ).json()
        headers = {"Authorization": f"Bearer {key['api_key']}"}
        assert (await intake.client.get("/v1/orders/ord_x", headers=headers)).status_code == 404
        revoked = await intake.client.delete(
            f"/v1/merchants/{intake.merchant_id}/keys/{key['id']}", headers=ops_headers()
        )
        assert revoked.status_code == 204
        assert (await intake.client.get("/v1/orders/ord_x", headers=headers)).status_code == 401
        assert (await intake.client.get("/v1/orders/ord_x", headers=intake.headers)).status_code == 404

    async def test_key_changes_are_announced_with_hashes_only(self, intake: Any) -> None:
        key = (
            await intake.client.post(
                f"/v1/merchants/{intake.merchant_id}/keys", json={}, headers=ops_headers()
            )
        ).json()
        changes = await eventually(
            lambda: len(intake.bus.envelopes("merchants.v1")) == 2 and intake.bus.envelopes("merchants.v1")
        )
        assert [len(e.data["key_hashes"]) for e in changes] == [1, 2]
        assert key["api_key"] not in str([e.data for e in changes])


class TestStatus:
    async def test_follows_delivery_events(self, intake: Any) -> None:
        order = await intake.create()
        await intake.publish(scheduled(order["id"]))
        reply = await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)
        assert reply.json()["status"] == "scheduled"
        history = (
            await intake.client.get(f"/v1/orders/{order['id']}/history", headers=intake.headers)
        ).json()
        assert [h["status"] for h in history] == ["received", "scheduled"]
        assert history[1]["detail"]["event"] == "lastmile.delivery.scheduled"

    async def test_gives_the_tracking_url(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.get(f"/v1/orders/{order['id']}/tracking", headers=intake.headers)
        assert reply.json() == {"order_id": order["id"], "tracking_url": order["tracking_url"]}
        event = (await eventually(lambda: intake.events("lastmile.order.created")))[0].data
        assert (
            order["tracking_url"]
            == event["tracking_url"]
            == "http://127.0.0.1:8003/track/" + event["tracking_token"]
        )
        assert len(event["tracking_token"]) >= 32


def scheduled(order_id: str) -> ev.DeliveryScheduled:
    return ev.DeliveryScheduled(
        order_id=order_id,
        depot_id="dep_berlin",
        vehicle_id="veh_1",
        route_id="rte_1",
        route_version=1,
        planned_arrival="2030-12-02T11:00:00+01:00",
        promised_window=ev.TimeWindow(start="2030-12-02T10:30:00+01:00", end="2030-12-02T11:30:00+01:00"),
        service_date="2030-12-02",
    )
