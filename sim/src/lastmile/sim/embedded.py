"""The embedded mode: all four services in one process on one in-memory bus, SQLite files under var/.

The services are the same apps the distributed mode runs; only the bus and the database differ, and both are
chosen by settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn

from lastmile.common.bus import InMemoryBus
from lastmile.common.clock import Clock
from lastmile.common.serve import quiet_gc, uvicorn_config
from lastmile.common.settings import CommonSettings
from lastmile.notifier.app import create_app as notifier_app
from lastmile.notifier.settings import NotifierSettings
from lastmile.order_intake.app import create_app as intake_app
from lastmile.order_intake.settings import IntakeSettings
from lastmile.planner.app import create_app as planner_app
from lastmile.planner.settings import PlannerSettings
from lastmile.tracker.app import create_app as tracker_app
from lastmile.tracker.settings import TrackerSettings

log = logging.getLogger("lastmile.embedded")

PORTS = {"order-intake": 8001, "planner": 8002, "tracker": 8003, "notifier": 8004}
OSMAND_PORT = (
    5055  # the tracker's OsmAnd listener (Traccar Client and other phone apps), as Traccar serves it
)


@dataclass
class Platform:
    var: Path
    host: str
    ops_token: str
    bus: InMemoryBus
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    servers: dict[str, uvicorn.Server] = field(default_factory=dict)
    osmand_port: int = 0
    # Inbound SMS (STOP) are signed with the provider's token; here the simulated customers play the provider.
    twilio_token: str = field(default_factory=lambda: secrets.token_hex(16))

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def osmand_url(self) -> str:
        return f"http://{self.host}:{self.osmand_port}/"


def load_ops_token(var: Path) -> str:
    """The ops token of an earlier run (its data is still in var/), else a new one."""
    credentials = var / "credentials.json"
    if credentials.exists():
        token = json.loads(credentials.read_text()).get("ops_token")
        if isinstance(token, str) and len(token) >= 16:
            return token
    return "lm_ops_" + secrets.token_urlsafe(24)


def service_settings(
    var: Path,
    host: str,
    ops_token: str,
    ports: dict[str, int],
    osmand_port: int = 0,
    twilio_token: str = "",
    **common: Any,
) -> dict[str, CommonSettings]:
    shared: dict[str, Any] = {
        "host": host,
        "ops_token": ops_token,
        "bus": "memory",
        "log_format": "text",
        **common,
    }
    shared.setdefault("public_url", f"http://{host}:{ports['tracker']}")
    db = f"sqlite+aiosqlite:///{var}"
    return {
        "order-intake": IntakeSettings(
            database_url=f"{db}/order-intake.db",
            port=ports["order-intake"],
            tracking_base_url=f"http://{host}:{ports['tracker']}/track/",
            **shared,
        ),
        "planner": PlannerSettings(database_url=f"{db}/planner.db", port=ports["planner"], **shared),
        "tracker": TrackerSettings(
            database_url=f"{db}/tracker.db", port=ports["tracker"], osmand_port=osmand_port, **shared
        ),
        "notifier": NotifierSettings(
            database_url=f"{db}/notifier.db",
            port=ports["notifier"],
            file_outbox_dir=str(var / "outbox"),
            twilio_auth_token=twilio_token,
            **shared,
        ),
    }


@contextlib.asynccontextmanager
async def running(
    var: Path,
    *,
    host: str = "127.0.0.1",
    clock: Clock | None = None,
    ports: dict[str, int] | None = None,
    osmand_port: int = 0,
    twilio_token: str | None = None,
    **common: Any,
) -> AsyncIterator[Platform]:
    """Start the four apps on their ports (and the tracker's OsmAnd listener: 0 picks a free port); stop them
    cleanly on exit."""
    var.mkdir(parents=True, exist_ok=True)
    clock = clock or Clock()
    bus = InMemoryBus()
    platform = Platform(
        var=var, host=host, ops_token=load_ops_token(var), bus=bus, ports=dict(ports or PORTS)
    )
    if twilio_token:
        platform.twilio_token = twilio_token
    settings = service_settings(
        var, host, platform.ops_token, platform.ports, osmand_port, platform.twilio_token, **common
    )
    factories = {
        "order-intake": intake_app,
        "planner": planner_app,
        "tracker": tracker_app,
        "notifier": notifier_app,
    }
    await bus.start()
    tasks = []
    apps = {}
    for name, factory in factories.items():
        s = settings[name]
        apps[name] = factory(s, bus=bus, clock=clock)  # type: ignore[operator]
        server = uvicorn.Server(uvicorn_config(apps[name], s.host, s.port))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # one handler, below
        platform.servers[name] = server
        tasks.append(asyncio.create_task(server.serve(), name=f"serve-{name}"))
    try:
        await _wait_started(platform, tasks)
        platform.osmand_port = apps["tracker"].state.osmand.port
        yield platform
    finally:
        for server in platform.servers.values():
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.stop()


async def _wait_started(platform: Platform, tasks: list[asyncio.Task[None]]) -> None:
    for _ in range(600):
        if all(s.started for s in platform.servers.values()):
            return
        for task in tasks:
            if task.done():
                raise RuntimeError(f"{task.get_name()} failed to start") from task.exception()
        await asyncio.sleep(0.05)
    raise RuntimeError("services did not start within 30 s")


# ---------------------------------------------------------------------------------------------------------
# The demo tenant: a merchant, a depot in Berlin, vans with drivers' phones


DEPOT = {
    "name": "Berlin Mitte",
    "lat": 52.52,
    "lon": 13.40,
    "timezone": "Europe/Berlin",
    "service_radius_km": 15,
}
VEHICLES = [
    {
        "profile": "van",
        "capacity_parcels": 120,
        "capacity_kg": 800,
        "shift_start": "07:00",
        "shift_end": "21:00",
    },
    {
        "profile": "van",
        "capacity_parcels": 120,
        "capacity_kg": 800,
        "shift_start": "07:00",
        "shift_end": "21:00",
    },
    {
        "profile": "cargo_bike",
        "capacity_parcels": 30,
        "capacity_kg": 120,
        "shift_start": "08:00",
        "shift_end": "18:00",
    },
]


async def seed_demo(platform: Platform) -> dict[str, Any]:
    """Create the demo tenant through the public ops APIs, once; later runs reuse var/credentials.json."""
    path = platform.var / "credentials.json"
    ops = {"Authorization": f"Bearer {platform.ops_token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        if path.exists():
            known = json.loads(path.read_text())
            depots = (await http.get(platform.url("planner") + "/v1/depots", headers=ops)).json()
            if any(d["id"] == known.get("depot", {}).get("id") for d in depots):
                return dict(known)
        depot = await _post(http, platform.url("planner") + "/v1/depots", DEPOT, ops)
        devices = []
        for spec in VEHICLES:
            vehicle = await _post(
                http, platform.url("planner") + "/v1/vehicles", {**spec, "depot_id": depot["id"]}, ops
            )
            device = await _post(
                http,
                platform.url("tracker") + "/v1/devices",
                {"vehicle_id": vehicle["id"], "name": "demo phone"},
                ops,
            )
            devices.append(
                {"vehicle_id": vehicle["id"], "device_id": device["id"], "device_key": device["device_key"]}
            )
        merchant = await _post(
            http, platform.url("order-intake") + "/v1/merchants", {"name": "Demo Shop"}, ops
        )
    credentials = {
        "merchant_api_key": merchant["api_key"],
        "merchant_id": merchant["id"],
        "ops_token": platform.ops_token,
        "depot": {"id": depot["id"], "lat": depot["lat"], "lon": depot["lon"], "timezone": depot["timezone"]},
        "devices": devices,
        "urls": {name: platform.url(name) for name in PORTS} | {"osmand": platform.osmand_url},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(credentials, indent=2))
    tmp.chmod(0o600)
    tmp.rename(path)
    return credentials


async def _post(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    reply = await http.post(url, json=body, headers=headers)
    reply.raise_for_status()
    result: dict[str, Any] = reply.json()
    return result


async def serve_forever(
    var: Path, ports: dict[str, int] | None = None, osmand_port: int = OSMAND_PORT
) -> None:
    """`make run`: start, seed, print where to look, run until Ctrl-C."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(var, ports=ports, osmand_port=osmand_port) as platform:
        credentials = await seed_demo(platform)
        write_example_order(platform.var / "example-order.json", credentials["depot"])
        print(banner(platform, credentials), flush=True)
        await stop.wait()
        print("\nStopping…", flush=True)


def write_example_order(path: Path, depot: dict[str, Any], today: date | None = None) -> None:
    """An order for the day after `today`, 10:00–18:00, a few streets from the depot."""
    tz = ZoneInfo(depot["timezone"])
    day = (today or datetime.now(tz).date()) + timedelta(days=1)
    start, end = (datetime.combine(day, time(h), tz).isoformat() for h in (10, 18))
    order = {
        "reference": "DEMO-" + secrets.token_hex(3).upper(),
        "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
        "destination": {"lat": depot["lat"] + 0.0008, "lon": depot["lon"] + 0.0095},
        "time_windows": [{"start": start, "end": end}],
        "parcels": [{"count": 1, "weight_kg": 2.5}],
    }
    path.write_text(json.dumps(order, indent=2))


def banner(platform: Platform, credentials: dict[str, Any]) -> str:
    lines = ["", "Lastmile is running (embedded mode: one process, in-memory bus, SQLite under var/).", ""]
    for name in PORTS:
        lines.append(f"  {name:<13} {platform.url(name)}/docs    metrics: {platform.url(name)}/metrics")
    lines.append(
        f"  {'osmand':<13} {platform.osmand_url}   (Traccar Client: server URL {platform.osmand_url}?key=<device key>)"
    )
    lines += [
        "",
        f"  credentials   {platform.var / 'credentials.json'}  (merchant API key, ops token, device keys)",
        f"  messages      {platform.var / 'outbox'}/  (what customers would receive)",
        "",
        "  Post an order:",
        f"    curl -s -X POST {platform.url('order-intake')}/v1/orders \\",
        '      -H "Authorization: Bearer $(jq -r .merchant_api_key var/credentials.json)" \\',
        f"      -H 'Content-Type: application/json' -d @{platform.var / 'example-order.json'}",
        "",
        "Ctrl-C stops.",
    ]
    return "\n".join(lines)


async def serve_for_simulator(var: Path, ports: dict[str, int], clock: Clock) -> None:
    """The platform alone, for a simulator in another process (`make demo`): no demo tenant; once it serves,
    `var/platform.json` says where and with which secrets (the file is the simulator's signal to begin)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(var, clock=clock, ports=ports) as platform:
        quiet_gc()  # the four apps are built: see quiet_gc (full collections held the loop for 0.3-0.6 s)
        announce = {
            "ops_token": platform.ops_token,
            "twilio_token": platform.twilio_token,
            "urls": {name: platform.url(name) for name in platform.ports},
            "osmand_url": platform.osmand_url,
        }
        tmp = var / "platform.tmp"
        tmp.write_text(json.dumps(announce))
        tmp.chmod(0o600)
        tmp.rename(var / "platform.json")
        await stop.wait()


def main() -> None:
    """`python -m lastmile.sim.embedded VAR PORT×4` (the services' ports in the order of PORTS): see
    `serve_for_simulator`; the clock from LASTMILE_CLOCK_*."""
    import sys

    from lastmile.common.logging import configure_logging
    from lastmile.common.serve import run_loop

    configure_logging("lastmile", os.environ.get("LASTMILE_LOG_LEVEL", "WARNING"), "text")
    var = Path(sys.argv[1])
    ports = dict(zip(PORTS, map(int, sys.argv[2:]), strict=True))
    clock = CommonSettings(ops_token=load_ops_token(var)).clock()  # LASTMILE_CLOCK_*
    run_loop(serve_for_simulator(var, ports, clock))


if __name__ == "__main__":
    main()
