"""Idempotency keys on every write, rate limits per merchant, body size limits, and the business metrics."""

import json
from typing import Any

from prometheus_client import REGISTRY

from lastmile.common.testing import ops_headers


def key(value: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": value}


class TestIdempotency:
    async def test_the_same_key_and_body_replays_the_first_answer_and_creates_nothing(
        self, intake: Any, an_order: Any
    ) -> None:
        body = json.dumps(an_order()).encode()
        headers = {**key("k-1", intake.headers), "content-type": "application/json"}
        first = await intake.client.post("/v1/orders", content=body, headers=headers)
        again = await intake.client.post("/v1/orders", content=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        await intake.wait_events(1)
        page = (await intake.client.get("/v1/orders", headers=intake.headers)).json()
        assert len(page["items"]) == 1

    async def test_the_same_key_with_another_body_is_a_clear_422(self, intake: Any, an_order: Any) -> None:
        await intake.create(an_order(), **{"Idempotency-Key": "k-2"})
        reply = await intake.client.post("/v1/orders", json=an_order(), headers=key("k-2", intake.headers))
        assert reply.status_code == 422
        assert reply.json()["code"] == "idempotency-key-reused"
        assert "k-2" in reply.json()["detail"]
        assert len(await intake.wait_events(1)) == 1

    async def test_the_same_key_on_another_route_is_refused(self, intake: Any) -> None:
        order = await intake.create(None, **{"Idempotency-Key": "k-3"})
        reply = await intake.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=key("k-3", intake.headers)
        )
        assert reply.json()["code"] == "idempotency-key-reused"

    async def test_keys_belong_to_one_merchant(self, intake: Any, an_order: Any) -> None:
        await intake.create(an_order(), **{"Idempotency-Key": "shared"})
        other = await intake.new_merchant()
        reply = await intake.client.post("/v1/orders", json=an_order(), headers=key("shared", other))
        assert reply.status_code == 201
        assert "idempotent-replayed" not in reply.headers

    async def test_a_replayed_cancel_answers_as_the_first_time(self, intake: Any) -> None:
        order = await intake.create()
        first = await intake.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=key("c-1", intake.headers)
        )
        again = await intake.client.post(
            f"/v1/orders/{order['id']}/cancel", headers=key("c-1", intake.headers)
        )
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert len(await intake.wait_events(2)) == 2

    async def test_a_replayed_change_makes_no_second_version(self, intake: Any) -> None:
        order = await intake.create()
        change = {"recipient": {"name": "Grace"}}
        for _ in range(2):
            reply = await intake.client.patch(
                f"/v1/orders/{order['id']}", json=change, headers=key("p-1", intake.headers)
            )
            assert reply.json()["version"] == 2
        assert [e.data["version"] for e in await intake.wait_events(2)] == [1, 2]

    async def test_a_replayed_batch_creates_nothing_new(self, intake: Any, an_order: Any) -> None:
        body = {"orders": [an_order(), an_order()]}
        first = await intake.client.post("/v1/orders/batch", json=body, headers=key("b-1", intake.headers))
        again = await intake.client.post("/v1/orders/batch", json=body, headers=key("b-1", intake.headers))
        assert again.content == first.content
        assert len(await intake.wait_events(2)) == 2

    async def test_a_failed_request_does_not_bind_its_key(self, intake: Any, an_order: Any) -> None:
        bad = await intake.client.post(
            "/v1/orders", json=an_order(priority=-1), headers=key("k-4", intake.headers)
        )
        assert bad.status_code == 422
        good = await intake.client.post("/v1/orders", json=an_order(), headers=key("k-4", intake.headers))
        assert good.status_code == 201

    async def test_refuses_an_unprintable_or_overlong_key(self, intake: Any, an_order: Any) -> None:
        for value in ("x" * 256, "tab\tkey"):
            reply = await intake.client.post(
                "/v1/orders", json=an_order(), headers=key(value, intake.headers)
            )
            assert reply.status_code == 422
            assert reply.json()["errors"][0]["pointer"] == "#/header/idempotency-key"


class TestLimits:
    async def test_a_merchant_over_its_rate_gets_429_with_retry_after(self, make_intake: Any) -> None:
        intake = await make_intake(rate_limit_per_second=0.5, rate_limit_burst=3)
        answers = [
            (await intake.client.get("/v1/orders", headers=intake.headers)).status_code for _ in range(4)
        ]
        assert answers == [200, 200, 200, 429]
        reply = await intake.client.get("/v1/orders", headers=intake.headers)
        assert reply.status_code == 429
        assert int(reply.headers["retry-after"]) >= 1
        assert reply.json()["code"] == "rate-limited"
        other = await intake.new_merchant()
        assert (await intake.client.get("/v1/orders", headers=other)).status_code == 200

    async def test_a_body_over_the_limit_is_413(self, intake: Any, an_order: Any) -> None:
        big = an_order(destination={"lat": 52.52, "lon": 13.4, "access_notes": "x" * 70_000})
        reply = await intake.client.post("/v1/orders", json=big, headers=intake.headers)
        assert reply.status_code == 413
        assert reply.headers["content-type"] == "application/problem+json"

    async def test_the_batch_route_takes_bigger_bodies(self, intake: Any, an_order: Any) -> None:
        orders = [an_order(metadata={"note": "x" * 400}) for _ in range(200)]  # about 140 KB
        reply = await intake.client.post("/v1/orders/batch", json={"orders": orders}, headers=intake.headers)
        assert reply.status_code == 200
        assert reply.json()["created"] == 200


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestMetrics:
    async def test_counts_orders_received_by_merchant_and_kind(self, intake: Any, an_order: Any) -> None:
        labels = {"merchant": intake.merchant_id}
        await intake.create(an_order(kind="return"))
        await intake.client.post(
            "/v1/orders/batch", json={"orders": [an_order(), an_order()]}, headers=intake.headers
        )
        assert sample("lastmile_order_intake_orders_received_total", **labels, kind="return") == 1
        assert sample("lastmile_order_intake_orders_received_total", **labels, kind="delivery") == 2
        text = (await intake.client.get("/metrics")).text
        assert (
            f'lastmile_order_intake_orders_received_total{{kind="return",merchant="{intake.merchant_id}"}} 1.0'
            in text
        )

    async def test_counts_rejections_by_reason(self, intake: Any, an_order: Any) -> None:
        def count(reason: str) -> float:
            return sample("lastmile_order_intake_orders_rejected_total", reason=reason)

        before = {
            r: count(r) for r in ("validation-error", "duplicate-reference", "no-depot", "unauthorized")
        }
        order = await intake.create()
        await intake.client.post(
            "/v1/orders", json={**an_order(), "reference": order["reference"]}, headers=intake.headers
        )
        await intake.client.post("/v1/orders", json=an_order(priority=-1), headers=intake.headers)
        await intake.client.post(
            "/v1/orders", json=an_order(destination={"lat": 1, "lon": 1}), headers=intake.headers
        )
        await intake.client.post("/v1/orders", json=an_order())
        batch = {"orders": [an_order(priority=-1), an_order()]}
        await intake.client.post("/v1/orders/batch", json=batch, headers=intake.headers)
        after = {r: count(r) - before[r] for r in before}
        assert after == {"validation-error": 2, "duplicate-reference": 1, "no-depot": 1, "unauthorized": 1}

    async def test_times_requests_per_route(self, intake: Any) -> None:
        order = await intake.create()
        await intake.client.get(f"/v1/orders/{order['id']}", headers=intake.headers)
        text = (await intake.client.get("/metrics", headers=ops_headers())).text
        assert 'route="/v1/orders/{order_id}"' in text
        assert (
            'lastmile_http_request_duration_seconds_count{method="POST",route="/v1/orders",service="order-intake"}'
            in text
        )
