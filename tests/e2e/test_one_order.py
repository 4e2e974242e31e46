"""One order through the four services running as separate processes on the real Kafka and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lastmile.common.testing import eventually
from lastmile.sim.distributed import Stack

pytestmark = pytest.mark.e2e
BERLIN = ZoneInfo("Europe/Berlin")


async def test_one_order_from_merchant_to_delivered_across_processes(stack: Stack) -> None:
    ops = {"Authorization": f"Bearer {stack.ops_token}"}
    async with httpx.AsyncClient(timeout=10) as http:

        async def post(
            service: str, path: str, body: dict[str, Any], headers: dict[str, str]
        ) -> dict[str, Any]:
            reply = await http.post(stack.url(service) + path, json=body, headers=headers)
            assert reply.status_code in (200, 201, 202), reply.text
            result: dict[str, Any] = reply.json()
            return result

        depot = await post("planner", "/v1/depots", {"name": "Mitte", "lat": 52.52, "lon": 13.40}, ops)
        vehicle = await post(
            "planner",
            "/v1/vehicles",
            {"depot_id": depot["id"], "shift_start": "07:00", "shift_end": "21:00"},
            ops,
        )
        device = await post("tracker", "/v1/devices", {"vehicle_id": vehicle["id"]}, ops)
        merchant = await post("order-intake", "/v1/merchants", {"name": "Acme"}, ops)
        as_merchant = {"Authorization": f"Bearer {merchant['api_key']}"}
        day = datetime.now(BERLIN).date() + timedelta(days=1)
        order_body = {
            "reference": "E2E-1",
            "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
            "destination": {"lat": 52.5208, "lon": 13.4095},
            "time_windows": [
                {
                    "start": datetime.combine(day, time(10), BERLIN).isoformat(),
                    "end": datetime.combine(day, time(18), BERLIN).isoformat(),
                }
            ],
            "parcels": [{"count": 1, "weight_kg": 2.5}],
        }

        async def accepted() -> dict[str, Any] | None:
            # order-intake learns of the depot through depots.v1; until then the destination has no depot
            reply = await http.post(
                stack.url("order-intake") + "/v1/orders", json=order_body, headers=as_merchant
            )
            return reply.json() if reply.status_code == 201 else None

        order = await eventually(accepted, timeout=60, interval=0.5)

        async def status_is(wanted: str) -> bool:
            reply = await http.get(
                f"{stack.url('order-intake')}/v1/orders/{order['id']}", headers=as_merchant
            )
            return bool(reply.json()["status"] == wanted)

        await eventually(lambda: status_is("scheduled"), timeout=60, interval=0.3)
        driver = {"Authorization": f"Bearer {device['device_key']}"}
        ping = {"lat": 52.521, "lon": 13.401, "recorded_at": datetime.now(UTC).isoformat()}
        assert (await post("tracker", "/v1/pings", {"pings": [ping]}, driver)) == {"ok": 1}
        await eventually(lambda: status_is("out_for_delivery"), timeout=60, interval=0.3)
        await post(
            "tracker",
            f"/v1/stops/{order['id']}/complete",
            {"outcome": "delivered", "recipient_name": "Ada"},
            driver,
        )
        await eventually(lambda: status_is("delivered"), timeout=60, interval=0.3)

        async def delivered_messages() -> list[dict[str, Any]]:
            reply = await http.get(
                stack.url("notifier") + "/v1/notifications", params={"order_id": order["id"]}, headers=ops
            )
            return [n for n in reply.json() if n["kind"] == "delivered" and n["status"] == "sent"]

        sent = await eventually(delivered_messages, timeout=60, interval=0.3)
        assert sorted(n["channel"] for n in sent) == ["email", "sms"]
        history = (
            await http.get(
                f"{stack.url('order-intake')}/v1/orders/{order['id']}/history", headers=as_merchant
            )
        ).json()
        assert [h["status"] for h in history] == ["received", "scheduled", "out_for_delivery", "delivered"]
