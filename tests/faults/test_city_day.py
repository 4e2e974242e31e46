"""A service's process killed (SIGKILL) and restarted mid-day in the simulated city: the day still ends with every
order in a true end state, no customer hears anything twice, and nothing is delivered that was not scheduled.

The day is the simulator's (`lastmile.sim.demo.run_day`, distributed mode: the four services as processes) on a
broker and a PostgreSQL of the module's own. Two kills, each followed at once by a restart:
- the planner at 10:00, while same-day orders still arrive (the cutoff is 12:00) and routes are re-planned: it
  holds the plans the phones follow and the solver's work in flight; on restart it must pick up the orders it
  missed from its consumer group's committed offsets and publish what it had not;
- the notifier at 13:30, in the afternoon's busiest stretch of messages (out for delivery, arriving soon,
  delivered): a crash mid-send is where a customer would hear something twice.
Not the tracker or order intake: the simulated phones and merchants call them synchronously, so killing them
tests the simulator's retries (a phone retries a stop result a few times at once, then gives up), not the
platform's recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from lastmile.common.clock import Clock
from lastmile.sim.demo import run_day
from lastmile.sim.embedded import PORTS
from lastmile.sim.invariants import (
    accepted,
    delivered_without_scheduled_before,
    messages_twice,
    not_in_an_end_state,
)
from lastmile.sim.launch import Launched
from lastmile.sim.observe import Observations
from lastmile.sim.runner import SimConfig

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

KILLS = (("planner", "10:00"), ("notifier", "13:30"))


@dataclass
class Kill:
    service: str
    at: datetime  # simulated time of the SIGKILL
    back: datetime | None = None  # simulated time it was ready again
    back_real: float = 0.0  # time.time() when it was ready again
    pid_before: int = 0
    pid_after: int = 0


@dataclass
class KilledDay:
    config: SimConfig
    observations: Observations
    figures: dict[str, Any]
    kills: list[Kill] = field(default_factory=list)
    wall_s: float = 0.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def killed_day(
    own_infra_module: Any, tmp_path_factory: pytest.TempPathFactory, free_port: Any
) -> KilledDay:
    infra = own_infra_module
    tomorrow = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(day=tomorrow, seed=13, orders=160, vehicles=9, speed=500)
    kills: list[Kill] = []

    async def during(clock: Clock, launched: Launched) -> None:
        stack = launched.stack
        assert stack is not None, "the distributed mode gives the stack"
        for service, hhmm in KILLS:
            wait = (config.at(hhmm) - clock.now()).total_seconds()
            if wait > 0:
                await clock.sleep(wait)
            kill = Kill(service, clock.now(), pid_before=stack.processes[service].pid)
            kills.append(kill)
            await asyncio.to_thread(stack.kill, service)  # SIGKILL: nothing flushed, nothing closed
            stack.start(service)
            await stack.wait_ready(service, timeout=90)
            kill.back, kill.back_real = clock.now(), time.time()
            kill.pid_after = stack.processes[service].pid

    ports = {name: free_port() for name in PORTS}
    began = time.monotonic()
    observations, figures = await run_day(
        config,
        Path(tmp_path_factory.mktemp("city-day")),
        ports,
        "distributed",
        kafka=infra.bootstrap,
        postgres=f"127.0.0.1:{infra.pg_port}",
        status=False,
        during=during,
    )
    return KilledDay(config, observations, figures, kills, round(time.monotonic() - began, 1))


async def test_the_services_were_killed_and_came_back_mid_day(killed_day: KilledDay) -> None:
    day = killed_day
    assert [k.service for k in day.kills] == [s for s, _ in KILLS], (
        "a kill did not happen: the test proves nothing"
    )
    for kill in day.kills:
        assert kill.back is not None, kill
        assert kill.pid_after != kill.pid_before, kill
        assert kill.back < day.config.at("18:00"), kill  # back with most of the day still to go
    planner, notifier = day.kills
    # The platform kept working after each restart: deliveries after the planner was back, messages written
    # after the notifier was back.
    assert planner.back is not None
    assert any(o.arrived_at and o.arrived_at > planner.back for o in day.observations.orders.values())
    assert any(m["written"] > notifier.back_real for m in day.observations.messages)
    # Orders posted while the planner was down or just after were planned all the same.
    late = [o for o in accepted(day.observations) if o.plan.post_at >= planner.at]
    assert late, "no order arrived after the planner's kill"
    assert any(o.final_status == "delivered" for o in late), Counter(o.final_status for o in late)


async def test_every_order_still_ends_delivered_failed_cancelled_or_unassigned_with_a_reason(
    killed_day: KilledDay,
) -> None:
    observations = killed_day.observations
    taken = accepted(observations)
    assert len(taken) >= 150, killed_day.figures
    assert not_in_an_end_state(observations) == []
    states = Counter(o.final_status for o in taken)
    assert states["delivered"] > len(taken) / 2, states


async def test_no_customer_gets_the_same_message_twice(killed_day: KilledDay) -> None:
    observations = killed_day.observations
    assert len(observations.messages) > 160
    assert messages_twice(observations) == []


async def test_every_delivered_order_was_scheduled_before(killed_day: KilledDay) -> None:
    observations = killed_day.observations
    assert any(o.final_status == "delivered" for o in observations.orders.values())
    assert delivered_without_scheduled_before(observations) == []
