"""The four services in one process (one InMemoryBus, SQLite files), seeded with two merchants, a depot, two
vans with their drivers' phones, and credentials of every kind, for the security tests.

Every test talks to the apps through httpx's ASGI transport (no sockets); `Platform.flow()` takes orders with
recipients from the merchant's API through planning, driving and delivery to the customers' messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI

from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.logging import JsonFormatter
from lastmile.common.outbox import pending_count
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, random_ref
from lastmile.notifier.app import create_app as notifier_app
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.sms import signature
from lastmile.order_intake.app import create_app as intake_app
from lastmile.order_intake.settings import IntakeSettings
from lastmile.planner.app import create_app as planner_app
from lastmile.planner.settings import PlannerSettings
from lastmile.tracker.app import create_app as tracker_app
from lastmile.tracker.settings import TrackerSettings

SERVICES = ("order-intake", "planner", "tracker", "notifier")
# Monday 2 December 2030, 09:00 in Berlin: the orders are for this day, 10:00 to 18:00, and no message is held
# back by quiet hours.
MORNING = datetime(2030, 12, 2, 8, 0, tzinfo=UTC)
WINDOW = {"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}
TWILIO_TOKEN = "twilio-auth-token-" + "s" * 14
TRACKER_URL = "http://tracker.test"
NOTIFIER_URL = "http://notifier.test"


@dataclass(frozen=True)
class MovableClock(Clock):
    """A clock a test can move forward (delivery plus a grace period, say) without waiting."""

    shift: list[float] = field(default_factory=lambda: [0.0], compare=False)

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.shift[0])

    def advance(self, seconds: float) -> None:
        self.shift[0] += seconds


@dataclass
class Order:
    id: str
    body: dict[str, Any]
    tracking_url: str

    @property
    def token(self) -> str:
        return self.tracking_url.rsplit("/", 1)[-1]


@dataclass
class Platform:
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    bus: InMemoryBus
    clock: MovableClock
    outbox: Path
    ops: dict[str, str]
    depot: dict[str, Any] = field(default_factory=dict)
    vehicles: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)  # with their keys, one per vehicle
    merchants: list[dict[str, Any]] = field(default_factory=list)  # with their keys: A, B
    revoked_merchant_key: str = ""
    revoked_device_key: str = ""

    def __getitem__(self, service: str) -> httpx.AsyncClient:
        return self.clients[service]

    @staticmethod
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    @property
    def merchant_a(self) -> dict[str, str]:
        return self.bearer(self.merchants[0]["api_key"])

    @property
    def merchant_b(self) -> dict[str, str]:
        return self.bearer(self.merchants[1]["api_key"])

    def driver(self, n: int = 0) -> dict[str, str]:
        return self.bearer(self.devices[n]["device_key"])

    def secrets(self) -> list[str]:
        """Every key the platform issued, in the clear."""
        keys = [m["api_key"] for m in self.merchants] + [d["device_key"] for d in self.devices]
        return [*keys, self.revoked_merchant_key, self.revoked_device_key, TEST_OPS_TOKEN, TWILIO_TOKEN]

    @staticmethod
    def twilio_signature(path: str, query: str, form: bytes) -> dict[str, str]:
        """The X-Twilio-Signature Twilio would send calling the notifier's `path?query` with this form."""
        url = f"{NOTIFIER_URL}{path}" + (f"?{query}" if query else "")
        return {"X-Twilio-Signature": signature(TWILIO_TOKEN, url, parse_qsl(form.decode()))}

    async def settle(self, timeout: float = 30) -> None:
        """Until every app has relayed its outbox and consumed every topic (twice: consuming adds to outboxes)."""

        async def quiet() -> bool:
            for app in self.apps.values():
                if await pending_count(app.state.runtime.db):
                    return False
            return not any(self.bus.pending(group, topic) for group, topic in list(self.bus._groups))

        for _ in range(3):
            await eventually(quiet, timeout=timeout)

    # ---------------------------------------------------------------------------------------------------
    # Orders and their journey

    def order_body(self, **changes: Any) -> dict[str, Any]:
        suffix = random_ref("")[2:]
        body: dict[str, Any] = {
            "reference": f"SEC-{suffix}",
            "recipient": {
                "name": "Ada Lovelace",
                "phone": f"+4915{int(suffix, 16) % 10**8:08d}",
                "email": f"ada.{suffix}@example.com",
            },
            "destination": {
                "lat": 52.5208,
                "lon": 13.4095,
                "address_lines": ["Unter den Linden 1"],
                "postal_code": "10117",
                "city": "Berlin",
            },
            "time_windows": [WINDOW],
            "parcels": [{"count": 1, "weight_kg": 2.5}],
        }
        body.update(changes)
        return body

    async def create_order(self, headers: dict[str, str] | None = None, **changes: Any) -> Order:
        body = self.order_body(**changes)
        reply = await self["order-intake"].post("/v1/orders", json=body, headers=headers or self.merchant_a)
        assert reply.status_code == 201, reply.text
        return Order(reply.json()["id"], body, reply.json()["tracking_url"])

    async def status(self, order: Any, headers: dict[str, str] | None = None) -> str:
        reply = await self["order-intake"].get(f"/v1/orders/{order.id}", headers=headers or self.merchant_a)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["status"])

    async def wait_status(
        self, orders: list[Any], wanted: str, timeout: float = 60, headers: dict[str, str] | None = None
    ) -> None:
        async def all_there() -> bool:
            return all([await self.status(o, headers) == wanted for o in orders])

        await eventually(all_there, timeout=timeout, interval=0.1)

    async def tracker_route(self, order: Order) -> dict[str, Any]:
        """The route (id, vehicle, stops in order) the tracker holds for an order."""
        routes = await self["planner"].get("/v1/routes", params={"date": "2030-12-02"}, headers=self.ops)
        assert routes.status_code == 200, routes.text
        for route in routes.json():
            if any(s["order_id"] == order.id for s in route["stops"]):
                return dict(route)
        raise AssertionError(f"order {order.id} is on no route")

    def device_of(self, vehicle_id: str) -> dict[str, str]:
        for device in self.devices:
            if device["vehicle_id"] == vehicle_id:
                return self.bearer(device["device_key"])
        raise AssertionError(f"no device for {vehicle_id}")

    async def ping(self, headers: dict[str, str], lat: float, lon: float) -> httpx.Response:
        ping = {"lat": lat, "lon": lon, "recorded_at": self.clock.now().isoformat()}
        return await self["tracker"].post("/v1/pings", json={"pings": [ping]}, headers=headers)

    async def deliver(self, order: Order) -> None:
        route = await self.tracker_route(order)
        driver = self.device_of(route["vehicle_id"])
        reply = await self.ping(driver, 52.5209, 13.4094)
        assert reply.status_code == 202, reply.text
        done = {"outcome": "delivered", "recipient_name": "Ada"}
        reply = await self["tracker"].post(f"/v1/stops/{order.id}/complete", json=done, headers=driver)
        assert reply.status_code == 200, reply.text

    async def flow(self, count: int = 3) -> list[Order]:
        """`count` orders of merchant A with recipients, from acceptance to delivered, their messages sent."""
        orders = [await self.create_order() for _ in range(count)]
        await self.wait_status(orders, "scheduled")
        for order in orders:
            await self.deliver(order)
        await self.wait_status(orders, "delivered")
        await eventually(lambda: len(self.messages(kind="delivered")) >= 2 * count, timeout=30)
        return orders

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What customers received (the notifier's file outbox)."""
        if not self.outbox.exists():
            return []
        found = [json.loads(p.read_text()) for p in sorted(self.outbox.glob("*.json"))]
        return [m for m in found if kind is None or m["kind"] == kind]


def platform_settings(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """The four services' settings; `overrides` maps a service to fields of its own."""
    common: dict[str, Any] = {"ops_token": TEST_OPS_TOKEN, "bus": "memory", "public_url": TRACKER_URL}
    db = f"sqlite+aiosqlite:///{tmp}"
    values: dict[str, dict[str, Any]] = {
        "order-intake": {"tracking_base_url": f"{TRACKER_URL}/track/"},
        "planner": {"replan_debounce_s": 0.05, "solver_timeout_s": 0.3, "solver_processes": 0},
        "tracker": {"osmand_port": -1, "stream_poll_s": 1.0},
        "notifier": {
            "file_outbox_dir": str(tmp / "outbox"),
            "notifier_url": NOTIFIER_URL,
            "twilio_auth_token": TWILIO_TOKEN,
        },
    }
    classes = {
        "order-intake": IntakeSettings,
        "planner": PlannerSettings,
        "tracker": TrackerSettings,
        "notifier": NotifierSettings,
    }
    return {
        name: classes[name](
            database_url=f"{db}/{name}-{random_ref()}.db", **common, **values[name], **overrides.get(name, {})
        )
        for name in SERVICES
    }


@contextlib.asynccontextmanager
async def running_platform(tmp: Path, **overrides: Any) -> AsyncIterator[Platform]:
    settings = platform_settings(tmp, **overrides)
    factories = {
        "order-intake": intake_app,
        "planner": planner_app,
        "tracker": tracker_app,
        "notifier": notifier_app,
    }
    clock = MovableClock(epoch=MORNING)
    bus = InMemoryBus(retry_backoff_s=0.05)
    await bus.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            apps = {name: factories[name](settings[name], bus=bus, clock=clock) for name in SERVICES}  # type: ignore[operator]
            clients = {}
            for name in SERVICES:
                base = {"tracker": TRACKER_URL, "notifier": NOTIFIER_URL}.get(name, f"http://{name}.test")
                clients[name] = await stack.enter_async_context(app_client(apps[name], base_url=base))
            platform = Platform(apps, clients, bus, clock, tmp / "outbox", ops_headers())
            await seed(platform)
            yield platform
    finally:
        await bus.stop()


async def _created(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def seed(p: Platform) -> None:
    """Through the ops APIs: a Berlin depot, two vans with a phone each (and a revoked phone), merchants A and
    B (and a revoked key of A's)."""
    ops = p.ops
    depot = {
        "name": "Mitte",
        "lat": 52.52,
        "lon": 13.40,
        "timezone": "Europe/Berlin",
        "service_radius_km": 15,
    }
    p.depot = await _created(await p["planner"].post("/v1/depots", json=depot, headers=ops))
    for _ in range(2):
        van = {"depot_id": p.depot["id"], "shift_start": "07:00", "shift_end": "21:00"}
        vehicle = await _created(await p["planner"].post("/v1/vehicles", json=van, headers=ops))
        p.vehicles.append(vehicle)
        phone = {"vehicle_id": vehicle["id"], "name": "phone"}
        p.devices.append(await _created(await p["tracker"].post("/v1/devices", json=phone, headers=ops)))
    spare = {"vehicle_id": p.vehicles[0]["id"], "name": "lost phone"}
    lost = await _created(await p["tracker"].post("/v1/devices", json=spare, headers=ops))
    reply = await p["tracker"].delete(f"/v1/devices/{lost['id']}", headers=ops)
    assert reply.status_code == 204, reply.text
    p.revoked_device_key = lost["device_key"]
    for name in ("Acme Books", "Bravo Shoes"):
        merchant = await _created(
            await p["order-intake"].post("/v1/merchants", json={"name": name}, headers=ops)
        )
        p.merchants.append(merchant)
    a = p.merchants[0]["id"]
    old = await _created(
        await p["order-intake"].post(f"/v1/merchants/{a}/keys", json={"label": "old"}, headers=ops)
    )
    reply = await p["order-intake"].delete(f"/v1/merchants/{a}/keys/{old['id']}", headers=ops)
    assert reply.status_code == 204, reply.text
    p.revoked_merchant_key = old["api_key"]
    await p.settle()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path) as p:
        yield p


@pytest.fixture
def start_platform(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Platform]]:
    """`async with start_platform(tracker={"device_rate_per_s": 5}) as p`: settings of the test's own."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[Platform]:
        return running_platform(tmp_path, **overrides)

    return start


# ---------------------------------------------------------------------------------------------------------
# Every log record of every service, as the services' formatter writes it


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_json = JsonFormatter("test")
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        """Each record as the services write it (the JSON formatter, which masks what it recognises)."""
        return [self.formatter_json.format(r) for r in self.records]

    def raw(self) -> list[str]:
        """Each record's message and arguments before any masking: what the code asked to log."""
        out = []
        for r in self.records:
            text = r.getMessage()
            if r.exc_info:
                text += "\n" + logging.Formatter().formatException(r.exc_info)
            fields = getattr(r, "fields", None)
            if fields:
                text += " " + json.dumps(fields, default=str)
            out.append(text)
        return out


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    """Every log record of every logger at every level while the test runs."""
    handler = Capture()
    root, ours = logging.getLogger(), logging.getLogger("lastmile")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # every library's records at the level the services run at
    ours.setLevel(logging.DEBUG)  # and the services' own at every level
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
