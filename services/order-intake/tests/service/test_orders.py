from typing import Any

from lastmile.common import events as ev
from lastmile.common.testing import TEST_OPS_TOKEN, eventually, publish, random_ref

ORDER = {
    "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
    "destination": {"lat": 52.5208, "lon": 13.4095},
    "time_windows": [{"start": "2026-12-01T10:00:00+01:00", "end": "2026-12-01T18:00:00+01:00"}],
    "parcels": [{"count": 1, "weight_kg": 2.5}],
}


def an_order(**changes: object) -> dict[str, object]:
    return {"reference": random_ref("A"), **ORDER, **changes}


class TestCreateOrder:
    async def test_accepts_the_minimal_order_and_publishes_it_once(self, intake: Any) -> None:
        reply = await intake.client.post("/v1/orders", json=an_order(), headers=intake.headers)
        assert reply.status_code == 201, reply.text
        order = reply.json()
        assert order["status"] == "received"
        assert order["depot_id"] == "dep_berlin"
        created = await eventually(lambda: intake.bus.envelopes("orders.v1", "lastmile.order.created"))
        assert [e.subject for e in created] == [order["id"]]
        assert created[0].data["depot_id"] == "dep_berlin"

    async def test_rejects_an_unknown_field_naming_it(self, intake: Any) -> None:
        reply = await intake.client.post("/v1/orders", json=an_order(colour="red"), headers=intake.headers)
        assert reply.status_code == 422
        assert reply.headers["content-type"] == "application/problem+json"
        assert "#/colour" in [e["pointer"] for e in reply.json()["errors"]]

    async def test_rejects_a_phone_not_in_e164(self, intake: Any) -> None:
        order = an_order(recipient={"name": "Ada", "phone": "07700 900123"})
        reply = await intake.client.post("/v1/orders", json=order, headers=intake.headers)
        assert reply.status_code == 422
        assert [e["pointer"] for e in reply.json()["errors"]] == ["#/recipient/phone"]

    async def test_refuses_a_destination_no_depot_serves(self, intake: Any) -> None:
        reply = await intake.client.post(
            "/v1/orders", json=an_order(destination={"lat": 48.1, "lon": 11.6}), headers=intake.headers
        )
        assert reply.status_code == 422
        assert reply.json()["code"] == "no-depot"

    async def test_a_duplicate_reference_is_a_conflict(self, intake: Any) -> None:
        order = an_order()
        assert (await intake.client.post("/v1/orders", json=order, headers=intake.headers)).status_code == 201
        reply = await intake.client.post("/v1/orders", json=order, headers=intake.headers)
        assert reply.status_code == 409
        assert len(intake.bus.envelopes("orders.v1")) <= 1


class TestAuth:
    async def test_without_a_key_is_401(self, intake: Any) -> None:
        reply = await intake.client.post("/v1/orders", json=an_order())
        assert reply.status_code == 401

    async def test_another_merchants_order_is_not_found(self, intake: Any) -> None:
        created = (await intake.client.post("/v1/orders", json=an_order(), headers=intake.headers)).json()
        other = (
            await intake.client.post(
                "/v1/merchants", json={"name": "Other"}, headers={"Authorization": "Bearer " + _ops()}
            )
        ).json()
        reply = await intake.client.get(
            f"/v1/orders/{created['id']}", headers={"Authorization": f"Bearer {other['api_key']}"}
        )
        assert reply.status_code == 404

    async def test_a_revoked_key_is_refused(self, intake: Any) -> None:
        ops = {"Authorization": "Bearer " + _ops()}
        key = (
            await intake.client.post(f"/v1/merchants/{intake.merchant_id}/keys", json={}, headers=ops)
        ).json()
        headers = {"Authorization": f"Bearer {key['api_key']}"}
        assert (await intake.client.get("/v1/orders/ord_x", headers=headers)).status_code == 404
        revoked = await intake.client.delete(
            f"/v1/merchants/{intake.merchant_id}/keys/{key['id']}", headers=ops
        )
        assert revoked.status_code == 204
        assert (await intake.client.get("/v1/orders/ord_x", headers=headers)).status_code == 401


class TestStatus:
    async def test_follows_delivery_events(self, intake: Any) -> None:
        order = (await intake.client.post("/v1/orders", json=an_order(), headers=intake.headers)).json()
        await publish(
            intake.bus,
            ev.DeliveryScheduled(
                order_id=order["id"],
                depot_id="dep_berlin",
                vehicle_id="veh_1",
                route_id="rte_1",
                route_version=1,
                planned_arrival="2026-12-01T11:00:00+01:00",
                promised_window=ev.TimeWindow(
                    start="2026-12-01T10:30:00+01:00", end="2026-12-01T11:30:00+01:00"
                ),
                service_date="2026-12-01",
            ),
        )

        async def status() -> str:
            reply = await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)
            return str(reply.json()["status"]) if reply.json()["status"] == "scheduled" else ""

        assert await eventually(status) == "scheduled"
        history = (
            await intake.client.get(f"/v1/orders/{order['id']}/history", headers=intake.headers)
        ).json()
        assert [h["status"] for h in history] == ["received", "scheduled"]


def _ops() -> str:
    return TEST_OPS_TOKEN
