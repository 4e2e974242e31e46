"""POST /v1/orders/batch: up to 1,000 orders, each created or rejected on its own."""

from typing import Any


async def test_creates_the_good_orders_and_names_the_bad_ones(intake: Any, an_order: Any) -> None:
    taken = await intake.create()
    orders = [
        an_order(),
        an_order(recipient={"name": "Ada", "phone": "12"}),
        an_order(reference=taken["reference"]),
        an_order(destination={"lat": 48.1, "lon": 11.6}),
        "not an order",
        an_order(),
    ]
    orders.append({**orders[0]})  # the same reference twice in one batch
    reply = await intake.client.post("/v1/orders/batch", json={"orders": orders}, headers=intake.headers)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["created"], result["rejected"]) == (2, 5)
    items = result["items"]
    assert [i["index"] for i in items] == list(range(7))
    assert [i["outcome"] for i in items] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
        "rejected",
    ]
    assert items[1]["problem"]["errors"][0]["pointer"] == "#/orders/1/recipient/phone"
    assert items[2]["problem"]["code"] == "duplicate-reference"
    assert items[2]["problem"]["errors"] == [
        {"pointer": "#/orders/2/reference", "detail": f"already used by {taken['id']}"}
    ]
    assert items[3]["problem"]["code"] == "no-depot"
    assert items[4]["problem"]["errors"][0]["pointer"] == "#/orders/4"
    assert items[6]["problem"]["code"] == "duplicate-reference"
    created_ids = {items[0]["id"], items[5]["id"]}
    assert {e.subject for e in await intake.wait_events(3)} == created_ids | {taken["id"]}
    for item in (items[0], items[5]):
        one = (await intake.client.get(f"/v1/orders/{item['id']}", headers=intake.headers)).json()
        assert one["tracking_url"] == item["tracking_url"]


async def test_takes_a_thousand_orders(intake: Any, an_order: Any) -> None:
    orders = [an_order() for _ in range(1000)]
    reply = await intake.client.post("/v1/orders/batch", json={"orders": orders}, headers=intake.headers)
    assert reply.status_code == 200
    assert reply.json()["created"] == 1000
    assert len(await intake.wait_events(1000)) == 1000


async def test_refuses_more_than_a_thousand(intake: Any, an_order: Any) -> None:
    order = an_order()
    reply = await intake.client.post(
        "/v1/orders/batch", json={"orders": [order] * 1001}, headers=intake.headers
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["pointer"] == "#/orders"
    assert intake.events() == []


async def test_refuses_an_empty_batch_and_unknown_fields(intake: Any, an_order: Any) -> None:
    for body, pointer in (({"orders": []}, "#/orders"), ({"orders": [an_order()], "x": 1}, "#/x")):
        reply = await intake.client.post("/v1/orders/batch", json=body, headers=intake.headers)
        assert reply.status_code == 422
        assert pointer in [e["pointer"] for e in reply.json()["errors"]]
