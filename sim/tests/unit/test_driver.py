"""A simulated driver follows the route the phone last synced, including while waiting at the depot."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from lastmile.common.clock import Clock
from lastmile.sim.client import Device
from lastmile.sim.drivers import Driver, DriverConfig
from lastmile.sim.observe import Observations, VehicleSeen
from lastmile.sim.traffic import Traffic

DEPOT = (52.52, 13.40)
SPEED = 3600.0  # a simulated hour a real second


class Phone:
    """The platform as a driver's phone meets it: stop results are taken, nothing else is asked for."""

    def __init__(self) -> None:
        self.completed: list[str] = []

    async def complete(self, device: Device, order_id: str, body: dict[str, Any]) -> int:
        self.completed.append(order_id)
        return 200

    async def finish_route(self, device: Device, route_id: str) -> int:
        return 200


def route(version: int, start_at: datetime, *order_ids: str) -> dict[str, Any]:
    return {
        "route_id": "rte_1",
        "version": version,
        "start_at": start_at.isoformat(),
        "stops": [
            {
                "order_id": o,
                "sequence": i + 1,
                "location": {"lat": DEPOT[0] + 0.01 * (i + 1), "lon": DEPOT[1]},
                "planned_arrival": (start_at + timedelta(minutes=10 * (i + 1))).isoformat(),
                "service_s": 120,
            }
            for i, o in enumerate(order_ids)
        ],
    }


async def test_a_driver_waiting_for_a_late_start_leaves_when_a_re_plan_brings_the_start_forward() -> None:
    now = datetime(2030, 12, 2, 7, 0, tzinfo=UTC)
    clock = Clock(speed=SPEED, epoch=now)
    seen = VehicleSeen("veh_1", 0, "van")
    driver = Driver(
        platform=Phone(),  # type: ignore[arg-type]
        clock=clock,
        device=Device("veh_1", "dev_1", "key"),
        depot=DEPOT,
        depot_id="dep_1",
        shift=(now, now + timedelta(hours=10)),
        traffic=Traffic(enabled=False),
        config=DriverConfig(),
        observations=Observations(),
        seen=seen,
        rng=random.Random(1),
    )
    driver.route = route(1, now + timedelta(hours=7), "ord_a")  # the first plan: one stop, in the afternoon
    work = asyncio.create_task(driver._work(until=now + timedelta(hours=12)))
    await asyncio.sleep(0.2)  # 12 simulated minutes at the depot
    driver.route = route(2, now + timedelta(minutes=30), "ord_a", "ord_b")  # a re-plan: out in half an hour
    await asyncio.sleep(1.0)
    leaves = [datetime.fromisoformat(n["t"]) for n in seen.log if n["what"] == "leave"]
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    assert leaves, "the driver is still waiting for the first plan's start"
    assert leaves[0] - now < timedelta(hours=1), leaves[0]
