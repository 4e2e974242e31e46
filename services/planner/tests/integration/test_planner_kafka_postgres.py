"""The planner on PostgreSQL and the real broker: orders in from orders.v1, routes and promises out on routes.v1
and deliveries.v1, plans recorded; a second order revises the route."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from lastmile.common import events as ev
from lastmile.common.bus import OutgoingRecord
from lastmile.common.clock import Clock
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers
from lastmile.planner.app import create_app
from lastmile.planner.settings import PlannerSettings

pytestmark = pytest.mark.integration
MORNING = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


async def read_types(bootstrap: str, topic: str, expect: set[str]) -> list[str]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not expect <= set(seen):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen += [ev.Envelope.from_bytes(r.value).type for r in records]
    finally:
        await consumer.stop()
    return seen


async def test_orders_in_routes_and_promises_out_on_postgres_and_kafka(
    kafka: Any, postgres: Any, make_order: Any
) -> None:
    settings = PlannerSettings(
        database_url=await postgres("planner"),
        ops_token=TEST_OPS_TOKEN,
        bus="kafka",
        kafka_bootstrap_servers=kafka.bootstrap,
        kafka_topic_prefix=kafka.prefix,
        kafka_partitions=2,
        replan_debounce_s=0.1,
        solver_timeout_s=0.5,
    )
    app = create_app(settings, clock=Clock(epoch=MORNING))
    async with app_client(app) as client:
        depot = (
            await client.post(
                "/v1/depots", json={"name": "Mitte", "lat": 52.52, "lon": 13.40}, headers=ops_headers()
            )
        ).json()
        await client.post("/v1/vehicles", json={"depot_id": depot["id"]}, headers=ops_headers())
        bus = app.state.runtime.bus
        for lat in (52.53, 52.54):
            created = make_order(depot["id"], lat)
            await bus.publish(
                [OutgoingRecord("orders.v1", depot["id"].encode(), created.envelope("test").to_bytes())]
            )
            await asyncio.sleep(1.0)

        async def routed() -> list[Any] | None:
            routes = (
                await client.get("/v1/routes", params={"date": "2026-12-01"}, headers=ops_headers())
            ).json()
            return routes if routes and len(routes[0]["stops"]) == 2 else None

        routes = await eventually(routed, timeout=90, interval=0.5)
        assert all(s["promised_window"] for s in routes[0]["stops"])
        plans = (
            await client.get("/v1/plans", params={"depot_id": depot["id"]}, headers=ops_headers())
        ).json()
        assert {p["status"] for p in plans} == {"done"}
        seen = await read_types(
            kafka.bootstrap, f"{kafka.prefix}routes.v1", {"lastmile.route.planned", "lastmile.route.revised"}
        )
        assert "lastmile.route.planned" in seen
        deliveries = await read_types(
            kafka.bootstrap, f"{kafka.prefix}deliveries.v1", {"lastmile.delivery.scheduled"}
        )
        assert deliveries.count("lastmile.delivery.scheduled") >= 2
