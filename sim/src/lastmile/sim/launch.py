"""The platform a simulated day runs against, in processes of its own: the embedded platform (one process) or
the four services on Kafka and PostgreSQL (`MODE=distributed`). Both share the day's clock through
`LASTMILE_CLOCK_*`, and the simulator reaches them only over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lastmile.common.clock import Clock
from lastmile.common.testing import listen_ports
from lastmile.planner.settings import PlannerSettings
from lastmile.sim.client import Platform
from lastmile.sim.distributed import MODULES, Stack
from lastmile.sim.embedded import PORTS
from lastmile.sim.traffic import Traffic


@dataclass
class Launched:
    platform: Platform  # the public HTTP interfaces
    stack: Stack | None = None  # the service processes, in the distributed mode (to break them on purpose)


def clock_env(clock: Clock) -> dict[str, str]:
    """The day's clock for every process, the settings that must stretch with it, and a solver process per
    depot of the city (its two depots' waves side by side, not one after the other)."""
    assert clock.epoch is not None, "a simulated day's clock is pinned"
    assert clock.anchor is not None, "a simulated day's clock is pinned"
    return {
        "LASTMILE_CLOCK_SPEED": repr(clock.speed),
        "LASTMILE_CLOCK_EPOCH": clock.epoch.isoformat(),
        "LASTMILE_CLOCK_ANCHOR": repr(clock.anchor),
        "LASTMILE_POSITION_MAX_AGE_S": str(position_max_age_s(clock.speed)),
        "LASTMILE_SOLVER_TIMEOUT_S": repr(solver_timeout_s(clock.speed)),
        "LASTMILE_SOLVER_DEADLINE_S": repr(solver_deadline_s(clock.speed)),
        "LASTMILE_SOLVER_PROCESSES": "2",
    }


def position_max_age_s(speed: float) -> int:
    """How old a vehicle's reported position may be for the planner to start from it: 10 minutes, or the
    simulated time 10 real seconds take (a ping's way from the phone to the planner), whichever is longer.
    At 300 times real time the pipeline's 2 s are 10 simulated minutes; without this the planner re-plans
    from stale places and breaks its promises (docs/benchmarks.md, the simulated day)."""
    return max(600, round(10 * speed))


def calibrated_detour(traffic: Traffic) -> float:
    """The planner calibrated to the simulated city, as a deployment calibrates it to its own from history:
    its detour factor grown by the legs' mean slowdown (11 % with traffic). Without this every plan is a tenth
    too optimistic and a van's promises break one after another through the afternoon."""
    return round(PlannerSettings.model_fields["detour_factor"].default * traffic.mean_time_factor(), 3)


def calibrated(traffic: Traffic) -> dict[str, str]:
    """`calibrated_detour` as the planner process's environment."""
    return {"LASTMILE_DETOUR_FACTOR": repr(calibrated_detour(traffic))}


def solver_timeout_s(speed: float) -> float:
    """A wave's budget for its engines: the planner's 25 real seconds at most, and at most what 20 simulated
    minutes take (4 s at 300 times real time), at least 2 s. A planner deployed in a city has its minutes; a
    compressed day's wave of 25 real seconds would be two hours of the day with nothing scheduled."""
    return max(2.0, min(25.0, 1200 / speed))


def solver_deadline_s(speed: float) -> float:
    """When a solve that has not answered is given up (its worker killed, the plan retried): six times its
    budget, at least 30 s. The planner's 5 minutes would be a day of a compressed city with no plan."""
    return max(30.0, 6 * solver_timeout_s(speed))


def _spawn(var: Path, ports: dict[str, int], clock: Clock, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with (var / "platform.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "lastmile.sim.embedded", str(var), *(str(ports[name]) for name in PORTS)],
            env={**os.environ, **clock_env(clock), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def embedded(
    var: Path, ports: dict[str, int], clock: Clock, env: Mapping[str, str] = MappingProxyType({})
) -> AsyncIterator[Launched]:
    """`python -m lastmile.sim.embedded` in a child process: the platform gets a core of its own."""
    var.mkdir(parents=True, exist_ok=True)
    announce = var / "platform.json"
    announce.unlink(missing_ok=True)
    child = _spawn(var, ports, clock, env)
    try:
        deadline = time.monotonic() + 60
        while not announce.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded platform did not start; see {var / 'platform.log'}")
            await asyncio.sleep(0.1)
        found = json.loads(announce.read_text())
        client = Platform(
            found["urls"],
            found["ops_token"],
            osmand_url=found["osmand_url"],
            twilio_token=found["twilio_token"],
        )
        try:
            yield Launched(client)
        finally:
            await client.close()
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.asynccontextmanager
async def distributed(
    var: Path,
    ports: dict[str, int],
    clock: Clock,
    kafka: str,
    postgres: str,
    osmand_port: int = 0,
    env: Mapping[str, str] = MappingProxyType({}),
) -> AsyncIterator[Launched]:
    """The four services as processes on the broker `kafka` and the PostgreSQL server `postgres`
    (`host:port`, user lastmile), with fresh databases and a fresh topic prefix."""
    import asyncpg

    run = "demo_" + secrets.token_hex(4)
    host, port = postgres.split(":")
    admin = await asyncpg.connect(host=host, port=int(port), user="lastmile", database="postgres")
    databases = {}
    try:
        for service in MODULES:
            name = f"{run}_{service.replace('-', '_')}"
            await admin.execute(f'CREATE DATABASE "{name}"')
            databases[service] = f"postgresql+asyncpg://lastmile@{postgres}/{name}"
    finally:
        await admin.close()
    stack = Stack(
        kafka_bootstrap=kafka,
        topic_prefix=run + ".",
        databases=databases,
        ports=ports,
        # The phones must know the tracker's OsmAnd port: with 0 the tracker chose one they never learnt, and
        # every distributed day until stop 18 ran without a single position (the planner never knew where a
        # van was, so none loading at the depot could take the day's late orders).
        osmand_port=osmand_port or listen_ports(),
        ops_token="lm_ops_" + secrets.token_urlsafe(24),
        logs=var,
        extra_env={**clock_env(clock), **env},
    )
    try:
        await stack.start_all(timeout=120)
        client = Platform(
            {name: stack.url(name) for name in MODULES},
            stack.ops_token,
            osmand_url=f"http://{stack.host}:{stack.osmand_port}/",
            twilio_token=stack.twilio_token,
        )
        try:
            yield Launched(client, stack)
        finally:
            await client.close()
    finally:
        stack.stop_all()
