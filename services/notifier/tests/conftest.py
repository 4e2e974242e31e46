"""Fixtures for the notifier's tests: the app on the in-memory bus and SQLite at a fixed daytime clock, and
events about one order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, ops_headers, random_ref
from lastmile.notifier.app import create_app
from lastmile.notifier.channels import Channel
from lastmile.notifier.settings import NotifierSettings

# 10:00 in Berlin: outside quiet hours.
NOON = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Notifier:
    client: httpx.AsyncClient
    bus: InMemoryBus
    settings: NotifierSettings
    outbox: Path
    app: Any

    @property
    def deps(self) -> Any:
        return self.app.state.deps

    async def log(self, order_id: str) -> list[dict[str, Any]]:
        reply = await self.client.get(
            "/v1/notifications", params={"order_id": order_id}, headers=ops_headers()
        )
        assert reply.status_code == 200, reply.text
        result: list[dict[str, Any]] = reply.json()
        return result


@dataclass
class Orders:
    """Events about orders, as order intake and the tracker publish them."""

    merchant_id: str = "mer_1"
    merchant_name: str = "Acme"
    t0: datetime = NOON
    made: list[str] = field(default_factory=list)

    def created(self, order_id: str | None = None, **recipient: Any) -> ev.OrderCreated:
        order_id = order_id or random_ref("ord")
        self.made.append(order_id)
        fields = {
            "name": "Ada Lovelace",
            "phone": "+447700900123",
            "email": "ada@example.com",
            "timezone": "Europe/Berlin",
            **recipient,
        }
        return ev.OrderCreated(
            order_id=order_id,
            merchant_id=self.merchant_id,
            merchant_name=self.merchant_name,
            reference="R-" + order_id,
            depot_id="dep_1",
            recipient=ev.Recipient(**fields),
            destination=ev.Destination(lat=52.5, lon=13.4),
            time_windows=[
                ev.TimeWindow(start=self.t0 + timedelta(hours=1), end=self.t0 + timedelta(hours=3))
            ],
            tracking_token="tok",
            tracking_url=f"http://127.0.0.1:8003/track/tok-{order_id}",
            created_at=self.t0,
        )

    def scheduled(self, order_id: str, start_h: float = 1, end_h: float = 3) -> ev.DeliveryScheduled:
        window = ev.TimeWindow(start=self.t0 + timedelta(hours=start_h), end=self.t0 + timedelta(hours=end_h))
        return ev.DeliveryScheduled(
            order_id=order_id,
            depot_id="dep_1",
            vehicle_id="veh_1",
            route_id="rte_1",
            route_version=1,
            planned_arrival=window.start + timedelta(minutes=30),
            promised_window=window,
            service_date=window.start.date(),
        )

    def out_for_delivery(self, order_id: str) -> ev.OutForDelivery:
        return ev.OutForDelivery(
            order_id=order_id,
            vehicle_id="veh_1",
            route_id="rte_1",
            eta=self.t0 + timedelta(hours=2),
            at=self.t0,
        )

    def delivered(self, order_id: str) -> ev.Delivered:
        return ev.Delivered(order_id=order_id, vehicle_id="veh_1", at=self.t0)

    def failed(self, order_id: str) -> ev.DeliveryFailed:
        return ev.DeliveryFailed(order_id=order_id, vehicle_id="veh_1", at=self.t0, reason="not_at_home")

    def eta(self, order_id: str, minutes: float, *, soon: bool = False) -> ev.EtaChanged:
        return ev.EtaChanged(
            order_id=order_id,
            vehicle_id="veh_1",
            eta=self.t0 + timedelta(minutes=minutes),
            arriving_soon=soon,
            at=self.t0,
        )


@pytest.fixture
def orders() -> Orders:
    return Orders()


MakeNotifier = Callable[..., Any]


@pytest.fixture
async def make_notifier(tmp_path: Path) -> AsyncIterator[MakeNotifier]:
    """`async with make_notifier(**settings) as n:` — the app, started, at 10:00 Berlin time unless `clock`."""
    stack = contextlib.AsyncExitStack()

    @contextlib.asynccontextmanager
    async def make(
        *,
        clock: Clock | None = None,
        channels: dict[str, Channel] | None = None,
        bus: InMemoryBus | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Notifier]:
        own_bus = bus is None
        bus = bus or InMemoryBus(retry_backoff_s=0.01)
        if own_bus:
            await bus.start()
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/notifier.db",
            "ops_token": TEST_OPS_TOKEN,
            "file_outbox_dir": str(tmp_path / "outbox"),
            "notifier_url": "http://notifier.test",
            **overrides,
        }
        settings = NotifierSettings(**values)
        app = create_app(settings, bus=bus, clock=clock or Clock(epoch=NOON), channels=channels)
        try:
            async with app_client(app, base_url="http://notifier.test") as client:
                yield Notifier(client, bus, settings, tmp_path / "outbox", app)
        finally:
            if own_bus:
                await bus.stop()

    async with stack:
        yield make
