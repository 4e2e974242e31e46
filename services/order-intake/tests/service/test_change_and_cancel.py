"""Changes and cancellations until the order is out for delivery; reading, listing and paging."""

from typing import Any

from lastmile.common import events as ev

NEW_WINDOW = [{"start": "2030-12-03T14:00:00+01:00", "end": "2030-12-03T16:00:00+01:00"}]


def out_for_delivery(order_id: str) -> ev.OutForDelivery:
    return ev.OutForDelivery(
        order_id=order_id, vehicle_id="veh_1", route_id="rte_1", at="2030-12-02T09:30:00+01:00"
    )


class TestChange:
    async def test_a_new_window_is_a_new_version_that_the_planner_sees(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.patch(
            f"/v1/orders/{order['id']}", json={"time_windows": NEW_WINDOW}, headers=intake.headers
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["version"] == 2
        assert reply.json()["time_windows"] == NEW_WINDOW
        created, updated = await intake.wait_events(2)
        assert updated.type == "lastmile.order.updated"
        assert (updated.data["version"], updated.data["changed"]) == (2, ["time_windows"])
        assert updated.data["time_windows"] == NEW_WINDOW
        assert updated.data["tracking_token"] == created.data["tracking_token"]

    async def test_changes_recipient_and_destination_together(self, intake: Any) -> None:
        order = await intake.create()
        change = {
            "recipient": {"name": "Grace Hopper", "phone": "+4915112345678"},
            "destination": {"lat": 52.50, "lon": 13.45, "access_notes": "Back door"},
        }
        changed = (
            await intake.client.patch(f"/v1/orders/{order['id']}", json=change, headers=intake.headers)
        ).json()
        assert changed["recipient"]["name"] == "Grace Hopper"
        assert changed["recipient"]["channels"] == ["sms"]
        assert changed["destination"]["access_notes"] == "Back door"
        assert changed["time_windows"] == order["time_windows"]
        updated = (await intake.wait_events(2))[1]
        assert sorted(updated.data["changed"]) == ["destination", "recipient"]
        again = (await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)).json()
        assert again == changed

    async def test_a_service_level_replaces_the_windows(self, intake: Any) -> None:
        order = await intake.create()
        changed = (
            await intake.client.patch(
                f"/v1/orders/{order['id']}", json={"service_level": "next_day"}, headers=intake.headers
            )
        ).json()
        assert changed["service_level"] == "next_day"
        assert changed["time_windows"][0]["start"] == "2030-12-03T07:00:00+01:00"

    async def test_a_destination_outside_the_depots_area_is_refused(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.patch(
            f"/v1/orders/{order['id']}",
            json={"destination": {"lat": 48.1, "lon": 11.6}},
            headers=intake.headers,
        )
        assert reply.status_code == 422
        assert reply.json()["errors"][0]["pointer"] == "#/destination"

    async def test_an_empty_change_is_refused(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.patch(f"/v1/orders/{order['id']}", json={}, headers=intake.headers)
        assert reply.status_code == 422

    async def test_refused_once_out_for_delivery(self, intake: Any) -> None:
        order = await intake.create()
        await intake.publish(out_for_delivery(order["id"]))
        reply = await intake.client.patch(
            f"/v1/orders/{order['id']}", json={"time_windows": NEW_WINDOW}, headers=intake.headers
        )
        assert reply.status_code == 409
        assert reply.json()["code"] == "order-not-changeable"
        assert len(await intake.wait_events(1)) == 1

    async def test_an_unknown_order_is_not_found(self, intake: Any) -> None:
        reply = await intake.client.patch(
            "/v1/orders/ord_nope", json={"time_windows": NEW_WINDOW}, headers=intake.headers
        )
        assert reply.status_code == 404


class TestCancel:
    async def test_cancels_with_a_new_version_and_history(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.post(
            f"/v1/orders/{order['id']}/cancel", json={"reason": "changed mind"}, headers=intake.headers
        )
        assert reply.status_code == 200, reply.text
        assert (reply.json()["status"], reply.json()["version"]) == ("cancelled", 2)
        cancelled = (await intake.wait_events(2))[1]
        assert cancelled.type == "lastmile.order.cancelled"
        assert (cancelled.data["version"], cancelled.data["reason"]) == (2, "changed mind")
        history = (
            await intake.client.get(f"/v1/orders/{order['id']}/history", headers=intake.headers)
        ).json()
        assert [h["status"] for h in history] == ["received", "cancelled"]

    async def test_cancels_without_a_body(self, intake: Any) -> None:
        order = await intake.create()
        reply = await intake.client.post(f"/v1/orders/{order['id']}/cancel", headers=intake.headers)
        assert reply.status_code == 200

    async def test_refused_once_out_for_delivery_or_cancelled(self, intake: Any) -> None:
        driving, cancelled = await intake.create(), await intake.create()
        await intake.publish(out_for_delivery(driving["id"]))
        await intake.client.post(f"/v1/orders/{cancelled['id']}/cancel", headers=intake.headers)
        for order in (driving, cancelled):
            reply = await intake.client.post(f"/v1/orders/{order['id']}/cancel", headers=intake.headers)
            assert reply.status_code == 409
            assert reply.json()["code"] == "order-not-cancellable"
        reply = await intake.client.patch(
            f"/v1/orders/{cancelled['id']}", json={"time_windows": NEW_WINDOW}, headers=intake.headers
        )
        assert reply.status_code == 409

    async def test_a_late_delivery_event_does_not_revive_a_cancelled_order(self, intake: Any) -> None:
        order = await intake.create()
        await intake.client.post(f"/v1/orders/{order['id']}/cancel", headers=intake.headers)
        await intake.publish(out_for_delivery(order["id"]))
        assert (await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)).json()[
            "status"
        ] == "cancelled"


class TestList:
    async def test_pages_newest_first_with_a_cursor(self, intake: Any) -> None:
        made = [(await intake.create())["id"] for _ in range(5)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await intake.client.get("/v1/orders", params=params, headers=intake.headers)).json()
            seen += [o["id"] for o in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(made, reverse=True)
        assert sorted(made) == made  # ids are time-ordered

    async def test_filters_by_status_reference_and_creation_time(self, intake: Any, an_order: Any) -> None:
        first = await intake.create()
        second = await intake.create(an_order(reference="FIND-ME"))
        await intake.client.post(f"/v1/orders/{first['id']}/cancel", headers=intake.headers)

        async def ids(**params: Any) -> list[str]:
            page = (await intake.client.get("/v1/orders", params=params, headers=intake.headers)).json()
            return [o["id"] for o in page["items"]]

        assert await ids(status="cancelled") == [first["id"]]
        assert await ids(status="received") == [second["id"]]
        assert await ids(reference="FIND-ME") == [second["id"]]
        assert await ids(created_from=second["created_at"]) == [second["id"]]
        assert await ids(created_to=second["created_at"]) == [first["id"]]
        assert await ids(created_from="2031-01-01T00:00:00Z") == []

    async def test_refuses_bad_filters(self, intake: Any) -> None:
        for params, pointer in (
            ({"cursor": "garbage"}, "#/query/cursor"),
            ({"status": "lost"}, "#/query/status"),
            ({"limit": 0}, "#/query/limit"),
            ({"limit": 201}, "#/query/limit"),
            ({"created_from": "2030-12-01T00:00:00"}, "#/query/created_from"),
        ):
            reply = await intake.client.get("/v1/orders", params=params, headers=intake.headers)
            assert reply.status_code == 422, params
            assert pointer in [e["pointer"] for e in reply.json()["errors"]], (params, reply.json())
