from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish, random_ref
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings

DEPOT = ev.DepotUpserted(
    depot_id="dep_berlin",
    name="Berlin Mitte",
    location=ev.GeoPoint(lat=52.52, lon=13.40),
    timezone="Europe/Berlin",
    service_radius_km=15,
    opens="07:00",
    closes="21:00",
)

ORDER: dict[str, Any] = {
    "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
    "destination": {"lat": 52.5208, "lon": 13.4095},
    "time_windows": [{"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}],
    "parcels": [{"count": 1, "weight_kg": 2.5}],
}


def _an_order(**changes: Any) -> dict[str, Any]:
    return {"reference": random_ref("A"), **ORDER, **changes}


@pytest.fixture
def an_order() -> Callable[..., dict[str, Any]]:
    """`an_order(**changes)`: a valid order with a fresh reference, changed as given."""
    return _an_order


@dataclass
class Intake:
    client: httpx.AsyncClient
    bus: InMemoryBus
    merchant_id: str
    headers: dict[str, str]

    async def new_merchant(self, name: str = "Other") -> dict[str, str]:
        """Headers of another merchant."""
        reply = await self.client.post("/v1/merchants", json={"name": name}, headers=ops_headers())
        assert reply.status_code == 201, reply.text
        return {"Authorization": f"Bearer {reply.json()['api_key']}"}

    async def create(self, order: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
        reply = await self.client.post(
            "/v1/orders", json=order or _an_order(), headers={**self.headers, **headers}
        )
        assert reply.status_code == 201, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def events(self, type_: str | None = None) -> list[ev.Envelope]:
        return self.bus.envelopes("orders.v1", type_)

    async def wait_events(self, count: int, type_: str | None = None) -> list[ev.Envelope]:
        """The orders.v1 events once there are `count` of them (the relay publishes after the commit)."""
        await eventually(lambda: len(self.events(type_)) >= count)
        found = self.events(type_)
        assert len(found) == count, [e.type for e in found]
        return found

    async def publish(self, payload: ev.Payload) -> None:
        await publish(self.bus, payload)
        await eventually(lambda: self.bus.pending("order-intake", payload.TOPIC.name) == 0)


MakeIntake = Callable[..., Awaitable[Intake]]

# Monday 2 December 2030, 09:00 in Berlin: every fixed time in these tests is in the future of this clock
MONDAY_9AM = datetime.fromisoformat("2030-12-02T08:00:00+00:00")


@pytest.fixture
async def make_intake(tmp_path: Path) -> AsyncIterator[MakeIntake]:
    """`await make_intake(clock=..., **settings)`: an order-intake app with one merchant and a Berlin depot."""
    async with AsyncExitStack() as stack:

        async def make(
            clock: Clock | None = None, depots: tuple[ev.DepotUpserted, ...] = (DEPOT,), **settings: Any
        ) -> Intake:
            bus = InMemoryBus()
            await bus.start()
            stack.push_async_callback(bus.stop)
            db = tmp_path / f"intake-{random_ref()}.db"
            config = IntakeSettings(
                database_url=f"sqlite+aiosqlite:///{db}", ops_token=TEST_OPS_TOKEN, **settings
            )
            app = create_app(config, bus=bus, clock=clock or Clock(epoch=MONDAY_9AM))
            client = await stack.enter_async_context(app_client(app))
            for depot in depots:
                await publish(bus, depot)
            reply = await client.post("/v1/merchants", json={"name": "Acme"}, headers=ops_headers())
            assert reply.status_code == 201, reply.text
            body = reply.json()
            await eventually(lambda: bus.pending("order-intake", "depots.v1") == 0)
            return Intake(client, bus, body["id"], {"Authorization": f"Bearer {body['api_key']}"})

        yield make


@pytest.fixture
async def intake(make_intake: MakeIntake) -> Intake:
    return await make_intake()
