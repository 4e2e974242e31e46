"""Abuse: a merchant over its rate limit, a phone flooding pings. Each is limited on its own; the others go on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.security


async def test_a_merchant_over_its_rate_limit_gets_429_and_the_others_do_not_notice(
    start_platform: Any,
) -> None:
    async with start_platform(
        **{"order-intake": {"rate_limit_per_second": 2.0, "rate_limit_burst": 10.0}}
    ) as p:
        intake = p["order-intake"]
        flood = await asyncio.gather(*(intake.get("/v1/orders", headers=p.merchant_a) for _ in range(60)))
        limited = [r for r in flood if r.status_code == 429]
        assert len([r for r in flood if r.status_code == 200]) <= 12  # the burst, and what refilled meanwhile
        assert len(limited) >= 45
        for reply in limited:
            assert reply.headers["content-type"] == "application/problem+json"
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json()["status"] == 429
        # writes are limited too, and a refused order is not stored
        reply = await intake.post("/v1/orders", json=p.order_body(), headers=p.merchant_a)
        assert reply.status_code == 429, reply.text
        # merchant B, at the same moment, has its whole burst: every request answered
        others, more_flood = await asyncio.gather(
            asyncio.gather(*(intake.get("/v1/orders", headers=p.merchant_b) for _ in range(8))),
            asyncio.gather(*(intake.get("/v1/orders", headers=p.merchant_a) for _ in range(30))),
        )
        assert [r.status_code for r in others] == [200] * 8
        assert {r.status_code for r in more_flood} == {429}
        order = await p.create_order(headers=p.merchant_b)
        assert await p.status(order, p.merchant_b) == "received"
        # and A is served again once it waited as told
        await asyncio.sleep(int(limited[-1].headers["Retry-After"]))
        assert (await intake.get("/v1/orders", headers=p.merchant_a)).status_code == 200


async def test_a_phone_flooding_pings_is_limited_and_the_other_phones_lose_nothing(
    start_platform: Any,
) -> None:
    async with start_platform(tracker={"device_rate_per_s": 2.0, "device_burst": 10.0}) as p:
        tracker, start = p["tracker"], p.clock.now()

        def batch(n: int, lat: float) -> dict[str, Any]:
            at = (start - timedelta(seconds=600 - n)).isoformat()
            return {"pings": [{"lat": lat + n * 1e-5, "lon": 13.40, "recorded_at": at}]}

        flood = [tracker.post("/v1/pings", json=batch(n, 52.50), headers=p.driver(0)) for n in range(80)]
        steady = [tracker.post("/v1/pings", json=batch(n, 52.53), headers=p.driver(1)) for n in range(10)]
        replies = await asyncio.gather(*flood, *steady)
        flooded, calm = replies[:80], replies[80:]
        assert [r.status_code for r in calm] == [202] * 10, [r.text for r in calm]
        refused = [r for r in flooded if r.status_code == 429]
        accepted = [r for r in flooded if r.status_code == 202]
        assert len(refused) >= 60
        assert 10 <= len(accepted) <= 14
        for reply in refused:
            assert reply.headers["content-type"] == "application/problem+json"
            assert int(reply.headers["Retry-After"]) >= 1
        await p.settle()

        async def track(vehicle: dict[str, Any]) -> list[Any]:
            params = {"since": (start - timedelta(hours=1)).isoformat(), "until": start.isoformat()}
            reply = await tracker.get(f"/v1/vehicles/{vehicle['id']}/track", params=params, headers=p.ops)
            assert reply.status_code == 200, reply.text
            return list(reply.json())

        assert len(await track(p.vehicles[1])) == 10, "every ping of the calm phone is stored"
        assert len(await track(p.vehicles[0])) == len(accepted), "the flooder's accepted pings are stored"
