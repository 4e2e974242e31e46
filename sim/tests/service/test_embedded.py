"""`make run`'s platform: four apps in one process; one order from a merchant to its customer's message."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lastmile.common.testing import ANY_HOUR, eventually
from lastmile.sim.embedded import PORTS, running, seed_demo


def tomorrow_order(depot: dict[str, Any], reference: str) -> dict[str, Any]:
    tz = ZoneInfo(depot["timezone"])
    day = datetime.now(tz).date() + timedelta(days=1)
    return {
        "reference": reference,
        "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
        "destination": {"lat": depot["lat"] + 0.01, "lon": depot["lon"] + 0.02},
        "time_windows": [
            {
                "start": datetime.combine(day, time(10), tz).isoformat(),
                "end": datetime.combine(day, time(18), tz).isoformat(),
            }
        ],
        "parcels": [{"count": 1, "weight_kg": 2.5}],
    }


async def test_an_order_goes_from_merchant_to_delivered_and_the_customer_hears(
    tmp_path: Path, free_port: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ANY_HOUR.items():  # the platform runs on the wall clock
        monkeypatch.setenv(name, value)
    ports = {name: free_port() for name in PORTS}
    async with running(tmp_path, ports=ports) as platform:
        credentials = await seed_demo(platform)
        saved = json.loads((tmp_path / "credentials.json").read_text())
        assert saved["merchant_api_key"] == credentials["merchant_api_key"]
        assert {"vehicle_id", "device_id", "device_key"} <= set(saved["devices"][0])

        def kinds() -> list[str]:
            return sorted(json.loads(f.read_text())["kind"] for f in (tmp_path / "outbox").glob("*.json"))

        async with httpx.AsyncClient(timeout=10) as http:
            for name in PORTS:
                assert (await http.get(platform.url(name) + "/healthz")).status_code == 200
                assert (await http.get(platform.url(name) + "/readyz")).json()["status"] == "ready"
            merchant = {"Authorization": f"Bearer {credentials['merchant_api_key']}"}
            order_url = platform.url("order-intake") + "/v1/orders"

            async def status(order_id: str, wanted: str) -> bool:
                reply = await http.get(f"{order_url}/{order_id}", headers=merchant)
                return bool(reply.json()["status"] == wanted)

            created = await http.post(
                order_url, json=tomorrow_order(credentials["depot"], "E-1"), headers=merchant
            )
            assert created.status_code == 201, created.text
            order = created.json()
            await eventually(lambda: status(order["id"], "scheduled"), timeout=30)

            routes = await http.get(
                platform.url("planner") + "/v1/routes",
                headers={"Authorization": f"Bearer {platform.ops_token}"},
            )
            route = next(r for r in routes.json() if any(s["order_id"] == order["id"] for s in r["stops"]))
            device = next(d for d in credentials["devices"] if d["vehicle_id"] == route["vehicle_id"])
            driver = {"Authorization": f"Bearer {device['device_key']}"}
            ping = {"lat": 52.521, "lon": 13.401, "recorded_at": datetime.now(ZoneInfo("UTC")).isoformat()}
            accepted = await http.post(
                platform.url("tracker") + "/v1/pings", json={"pings": [ping]}, headers=driver
            )
            assert accepted.json() == {"ok": 1}
            await eventually(lambda: status(order["id"], "out_for_delivery"), timeout=30)
            # the driver rings a while later: a message still unsent when the parcel is delivered is dropped
            await eventually(lambda: kinds().count("out_for_delivery") == 2, timeout=30)
            done = await http.post(
                platform.url("tracker") + f"/v1/stops/{order['id']}/complete",
                json={"outcome": "delivered", "recipient_name": "Ada"},
                headers=driver,
            )
            assert done.status_code == 200, done.text
            await eventually(lambda: status(order["id"], "delivered"), timeout=30)

        expected = sorted(["scheduled", "out_for_delivery", "delivered"] * 2)
        assert await eventually(lambda: kinds() == expected, timeout=30)
