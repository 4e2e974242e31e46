"""Concurrent writes on PostgreSQL: group commit, batches and single creations racing for the same references
and keys never create an order twice, never answer 5xx, and publish one event per order."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish, random_ref
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings

pytestmark = pytest.mark.integration

DEPOT = ev.DepotUpserted(
    depot_id="dep_berlin",
    name="Berlin",
    location=ev.GeoPoint(lat=52.52, lon=13.40),
    timezone="Europe/Berlin",
    service_radius_km=15,
)


def an_order(reference: str) -> dict[str, Any]:
    return {
        "reference": reference,
        "recipient": {"name": "Ada", "phone": "+447700900123"},
        "destination": {"lat": 52.5208, "lon": 13.4095},
        "service_level": "next_day",
    }


@pytest.fixture
async def intake(postgres: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], InMemoryBus]]:
    bus = InMemoryBus()
    await bus.start()
    settings = IntakeSettings(
        database_url=await postgres("intake"),
        ops_token=TEST_OPS_TOKEN,
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
    )
    async with app_client(create_app(settings, bus=bus)) as client:
        await publish(bus, DEPOT)
        merchant = (await client.post("/v1/merchants", json={"name": "Acme"}, headers=ops_headers())).json()
        await eventually(lambda: bus.pending("order-intake", "depots.v1") == 0)
        yield client, {"Authorization": f"Bearer {merchant['api_key']}"}, bus
    await bus.stop()


async def test_one_reference_raced_by_many_requests_is_created_once(intake: Any) -> None:
    client, headers, bus = intake
    reference = random_ref("R")
    replies = await asyncio.gather(
        *(client.post("/v1/orders", json=an_order(reference), headers={**headers, "Idempotency-Key": f"k{i}"})
          for i in range(20))
    )  # fmt: skip
    assert Counter(r.status_code for r in replies) == {201: 1, 409: 19}
    await eventually(lambda: len(bus.envelopes("orders.v1")) >= 1)
    await asyncio.sleep(0.3)
    assert len(bus.envelopes("orders.v1")) == 1


async def test_one_key_raced_by_many_requests_answers_them_all_alike(intake: Any) -> None:
    client, headers, bus = intake
    body = an_order(random_ref("K"))
    replies = await asyncio.gather(
        *(
            client.post("/v1/orders", json=body, headers={**headers, "Idempotency-Key": "same"})
            for _ in range(20)
        )
    )
    assert {r.status_code for r in replies} == {201}
    assert len({r.content for r in replies}) == 1
    await eventually(lambda: len(bus.envelopes("orders.v1")) >= 1)
    await asyncio.sleep(0.3)
    assert len(bus.envelopes("orders.v1")) == 1


async def test_batches_and_single_orders_racing_for_references_create_each_once(intake: Any) -> None:
    client, headers, bus = intake
    references = [random_ref("B") for _ in range(200)]
    batches = [
        client.post("/v1/orders/batch", json={"orders": [an_order(r) for r in references]}, headers=headers)
        for _ in range(3)
    ]
    singles = [client.post("/v1/orders", json=an_order(r), headers=headers) for r in references[::10]]
    replies = await asyncio.gather(*batches, *singles)
    assert all(r.status_code < 500 for r in replies), [r.text for r in replies if r.status_code >= 500]
    created = sum(r.json()["created"] for r in replies[:3]) + sum(r.status_code == 201 for r in replies[3:])
    assert created == len(references)
    await eventually(lambda: len(bus.envelopes("orders.v1")) >= len(references))
    await asyncio.sleep(0.3)
    published = Counter(e.data["reference"] for e in bus.envelopes("orders.v1"))
    assert published == dict.fromkeys(references, 1)
