"""A real Prometheus scrapes the four services (separate processes on the real Kafka and PostgreSQL) while a small
day runs through their public APIs, and every query of every dashboard panel returns data."""

from __future__ import annotations

import asyncio
import json
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lastmile.common.testing import eventually
from lastmile.sim.distributed import Stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
SERVICES = ("order-intake", "planner", "tracker", "notifier")
RATE_INTERVAL = "10s"
# Prometheus scrapes every second; the day's steps are spread over scrapes, as a real day's are, so that rates and
# histograms see counters rise between two samples (a burst inside one scrape interval shows no rate).
BEAT = 1.2  # what Grafana's $__rate_interval would be for a 1 s scrape interval, with margin
DESTINATIONS = [
    (52.5208, 13.4095),
    (52.5155, 13.3777),
    (52.5301, 13.4102),
    (52.5089, 13.3902),
    (52.5250, 13.3690),
]


@dataclass
class Day:
    """A small day driven through the public APIs: what it created, for the later steps."""

    stack: Stack
    http: httpx.AsyncClient
    ops: dict[str, str]
    merchants: dict[str, str] = field(default_factory=dict)  # merchant id -> API key
    devices: dict[str, str] = field(default_factory=dict)  # vehicle id -> device key
    orders: dict[str, str] = field(default_factory=dict)  # order id -> merchant API key
    depot: str = ""

    async def post(self, service: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        reply = await self.http.post(self.stack.url(service) + path, json=body, headers=headers)
        assert reply.status_code in (200, 201, 202), f"{path}: {reply.status_code} {reply.text}"
        return reply.json()

    async def status(self, order_id: str) -> str:
        reply = await self.http.get(
            f"{self.stack.url('order-intake')}/v1/orders/{order_id}",
            headers={"Authorization": f"Bearer {self.orders[order_id]}"},
        )
        return str(reply.json()["status"])

    async def all_reach(self, wanted: set[str], orders: list[str], timeout: float = 45) -> None:
        async def reached() -> bool:
            return all([await self.status(o) in wanted for o in orders])

        await eventually(reached, timeout=timeout, interval=0.3)


async def set_up_fleet_and_merchants(day: Day) -> None:
    depot = await day.post("planner", "/v1/depots", {"name": "Mitte", "lat": 52.52, "lon": 13.40}, day.ops)
    day.depot = depot["id"]
    for _ in range(2):
        vehicle = await day.post(
            "planner",
            "/v1/vehicles",
            {"depot_id": day.depot, "shift_start": "07:00", "shift_end": "21:00"},
            day.ops,
        )
        device = await day.post("tracker", "/v1/devices", {"vehicle_id": vehicle["id"]}, day.ops)
        day.devices[vehicle["id"]] = device["device_key"]
    for name in ("Acme Books", "Blumen Berlin"):
        merchant = await day.post("order-intake", "/v1/merchants", {"name": name}, day.ops)
        day.merchants[merchant["id"]] = merchant["api_key"]


def order_body(reference: str, where: tuple[float, float], weight_kg: float = 2.0) -> dict[str, Any]:
    tomorrow = datetime.now(BERLIN).date() + timedelta(days=1)
    return {
        "reference": reference,
        "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
        "destination": {"lat": where[0], "lon": where[1]},
        "time_windows": [
            {
                "start": datetime.combine(tomorrow, time(10), BERLIN).isoformat(),
                "end": datetime.combine(tomorrow, time(18), BERLIN).isoformat(),
            }
        ],
        "parcels": [{"count": 1, "weight_kg": weight_kg}],
    }


async def place_orders(day: Day) -> tuple[list[str], str]:
    """Five orders from two merchants, and one too heavy for any vehicle (the planner leaves it unassigned)."""
    keys = list(day.merchants.values())

    async def place(key: str, body: dict[str, Any]) -> str | None:
        reply = await day.http.post(
            day.stack.url("order-intake") + "/v1/orders",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        if reply.status_code != 201:  # 422 until order-intake has learnt of the depot through depots.v1
            return None
        day.orders[reply.json()["id"]] = key
        return str(reply.json()["id"])

    first = await eventually(
        lambda: place(keys[0], order_body("O-0", DESTINATIONS[0])), timeout=60, interval=0.5
    )
    served = [first]
    await day.all_reach({"scheduled"}, served)  # a first plan; the next orders re-plan the day
    for i, where in enumerate(DESTINATIONS[1:], start=1):
        await asyncio.sleep(BEAT)
        placed = await place(keys[i % 2], order_body(f"O-{i}", where))
        assert placed is not None
        served.append(placed)
    too_heavy = await place(keys[1], order_body("O-heavy", DESTINATIONS[0], weight_kg=950.0))
    assert too_heavy is not None
    return served, too_heavy


async def drive_routes(day: Day, served: list[str]) -> None:
    """Each vehicle reports where it is (its route starts), then completes its stops: one fails, the rest are
    delivered."""
    reply = await day.http.get(
        day.stack.url("planner") + "/v1/routes", params={"depot_id": day.depot}, headers=day.ops
    )
    routes = [r for r in reply.json() if r["stops"]]
    assert {s["order_id"] for r in routes for s in r["stops"]} == set(served)

    async def ping(vehicle: str, extra: list[dict[str, Any]] | None = None) -> dict[str, int]:
        now = datetime.now(UTC)
        pings = [{"lat": 52.521, "lon": 13.401, "recorded_at": now.isoformat()}, *(extra or [])]
        body = {"pings": pings}
        headers = {"Authorization": f"Bearer {day.devices[vehicle]}"}
        result: dict[str, int] = await day.post("tracker", "/v1/pings", body, headers)
        return result

    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    for route in routes:
        await ping(route["vehicle_id"], [{"lat": 52.52, "lon": 13.40, "recorded_at": future}])  # one refused

    async def started() -> bool:
        for route in routes:  # a route starts with the first position after the tracker has the route
            await ping(route["vehicle_id"])
        return all([await day.status(o) == "out_for_delivery" for o in served])

    await eventually(started, timeout=45, interval=0.5)
    failed = served[-1]
    for route in routes:
        headers = {"Authorization": f"Bearer {day.devices[route['vehicle_id']]}"}
        for stop in route["stops"]:
            outcome = (
                {"outcome": "failed", "reason": "not_at_home"}
                if stop["order_id"] == failed
                else {"outcome": "delivered", "recipient_name": "Ada"}
            )
            await day.post("tracker", f"/v1/stops/{stop['order_id']}/complete", outcome, headers)
            await asyncio.sleep(BEAT)


async def publish_poison(stack: Stack, bootstrap: str) -> None:
    """A record that is not an event, on orders.v1: every consumer of the topic dead-letters it."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic_prefix + "orders.v1", b"{not an event", key=b"poison")
    finally:
        await producer.stop()


async def ask_wrongly(day: Day) -> None:
    """Client errors the HTTP panels show: no key (401), an order that is not there (404)."""
    intake = day.stack.url("order-intake")
    assert (await day.http.get(intake + "/v1/orders/ord_nope")).status_code == 401
    key = next(iter(day.merchants.values()))
    reply = await day.http.get(intake + "/v1/orders/ord_nope", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 404


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text())
        for p in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    }


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query, with Grafana's variables as Grafana would fill them."""
    variables = {v["name"] for v in board["templating"]["list"]}
    services = SERVICES if "service" in variables else (None,)
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for service in services:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                title = panel["title"]
                if service is not None:
                    expr, title = expr.replace("$service", service), f"{title} [{service}]"
                assert "$" not in expr, f"unfilled variable in {title}: {expr}"
                found.append((title, expr))
    return found


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(value != "NaN" for series in result for _, value in series["values"])


async def test_every_dashboard_panel_shows_data_from_a_running_stack(
    stack: Stack, prometheus: Any, kafka: Any
) -> None:
    began = clock.time()
    ops = {"Authorization": f"Bearer {stack.ops_token}"}
    async with httpx.AsyncClient(timeout=15) as http:
        day = Day(stack, http, ops)
        await set_up_fleet_and_merchants(day)
        served, too_heavy = await place_orders(day)
        await day.all_reach({"scheduled"}, served)
        await day.all_reach({"unassigned"}, [too_heavy])
        await publish_poison(stack, kafka.bootstrap)
        await ask_wrongly(day)
        await drive_routes(day, served)
        await day.all_reach({"delivered", "failed"}, served)

        async def scraped() -> bool:
            # what the day did has reached Prometheus (scraped every second)
            checks = {
                f"sum(lastmile_tracker_stops_completed_total) >= {len(served)}",
                "count(lastmile_events_dead_lettered_total) >= 3",
                'sum(lastmile_notifier_messages_total{kind="delivered"}) > 0',
            }
            return all([await prometheus.query(http, q) for q in checks])

        await eventually(scraped, timeout=30, interval=1)
        await eventually(
            lambda: clock.time() - began > 12, timeout=15, interval=0.5
        )  # rates need two windows
        end = clock.time()

        empty = []
        for name, board in dashboards().items():
            for title, expr in panel_queries(board):
                if not has_data(await prometheus.query_range(http, expr, began, end)):
                    empty.append(f"{name}: {title}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        # the service dashboard's variable lists the four services
        reply = await http.get(
            prometheus.url + "/api/v1/label/service/values",
            params={"match[]": "lastmile_http_requests_total"},
        )
        assert set(reply.json()["data"]) == set(SERVICES)

        # the alert rules load and evaluate against real series without error
        groups = (await http.get(prometheus.url + "/api/v1/rules")).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 9
        assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
        firing = {
            a["labels"]["alertname"] for r in rules for a in r.get("alerts", []) if a["state"] == "firing"
        }
        assert {"LastmileDeadLetters", "LastmileUnassignedJobs"} <= firing
        assert "LastmileServiceDown" not in firing
