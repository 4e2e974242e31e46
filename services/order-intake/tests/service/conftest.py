from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import InMemoryBus
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers, publish
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings

DEPOT = ev.DepotUpserted(
    depot_id="dep_berlin",
    name="Berlin Mitte",
    location=ev.GeoPoint(lat=52.52, lon=13.40),
    timezone="Europe/Berlin",
    service_radius_km=15,
)


@dataclass
class Intake:
    client: httpx.AsyncClient
    bus: InMemoryBus
    merchant_id: str
    headers: dict[str, str]


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    bus = InMemoryBus()
    await bus.start()
    settings = IntakeSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/intake.db", ops_token=TEST_OPS_TOKEN
    )
    app = create_app(settings, bus=bus)
    async with app_client(app) as client:
        await publish(bus, DEPOT)
        reply = await client.post("/v1/merchants", json={"name": "Acme"}, headers=ops_headers())
        assert reply.status_code == 201, reply.text
        body = reply.json()
        await eventually(lambda: bus.pending("order-intake", "depots.v1") == 0)
        yield Intake(client, bus, body["id"], {"Authorization": f"Bearer {body['api_key']}"})
    await bus.stop()
