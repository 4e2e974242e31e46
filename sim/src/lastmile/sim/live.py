"""`make run` with the simulated city: the embedded platform on a fast clock, merchants, drivers and customers
at work on it, a live status line. `LASTMILE_SIM=0` runs the platform alone on the real clock instead."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common.serve import quiet_gc
from lastmile.sim.city import BERLIN
from lastmile.sim.client import Platform
from lastmile.sim.embedded import PORTS, running, write_example_order
from lastmile.sim.launch import calibrated_detour, position_max_age_s, solver_deadline_s, solver_timeout_s
from lastmile.sim.observe import Observations
from lastmile.sim.report import kpis, table
from lastmile.sim.runner import Day, SimConfig, Tenant, set_up, start_clock
from lastmile.sim.traffic import Traffic


@dataclass(frozen=True)
class LiveConfig:
    speed: float = 120.0
    orders: int = 400  # a morning wave of ~130 stops a depot plans in seconds: deliveries within the minute
    vehicles: int = 14
    seed: int = 7


async def run_city(var: Path, ports: dict[str, int], osmand_port: int, live: LiveConfig) -> None:
    """One simulated day (today, Berlin time) from 08:00, then the platform keeps serving until Ctrl-C."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shutil.rmtree(var, ignore_errors=True)  # a new city every run: its clock starts the day again
    today = datetime.now(ZoneInfo(BERLIN.timezone)).date()
    # From 08:00: the night's orders are posted at once, vans set out, the first windows open at 09:00.
    config = SimConfig(
        day=today,
        seed=live.seed,
        orders=live.orders,
        vehicles=live.vehicles,
        speed=live.speed,
        start="08:00",
    )
    clock = start_clock(config)
    async with running(
        var,
        clock=clock,
        ports=ports,
        osmand_port=osmand_port,
        position_max_age_s=position_max_age_s(live.speed),
        solver_timeout_s=solver_timeout_s(live.speed),
        solver_deadline_s=solver_deadline_s(live.speed),
        detour_factor=calibrated_detour(Traffic(enabled=config.traffic)),
        # a second solver process: a merchant's order for tomorrow is planned in seconds even while the city's
        # day is being re-planned (a re-plan of a few hundred stops takes 5-20 s)
        solver_processes=2,
    ) as platform:
        quiet_gc()  # the four apps are built (see quiet_gc)
        urls = {name: platform.url(name) for name in platform.ports}
        client = Platform(
            urls, platform.ops_token, osmand_url=platform.osmand_url, twilio_token=platform.twilio_token
        )
        try:
            tenant = await set_up(client, config)
            credentials = _credentials(platform.ops_token, urls, platform.osmand_url, tenant)
            # beside the city's data, where `make run` always writes them (a contract scripts rely on)
            _write_private(var.parent / "credentials.json", credentials)
            write_example_order(var.parent / "example-order.json", credentials["depot"], clock.now().date())
            print(banner(var, urls, platform.osmand_url, config), flush=True)
            day = Day(client, clock, config, var / "outbox")
            status = StatusLine(clock.now().tzinfo or ZoneInfo(BERLIN.timezone))
            running_day = asyncio.create_task(day.run(tenant, on_status=status.update))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running_day, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running_day.done():
                _summary(var / "report", running_day.result(), config)
                print("The simulated day is over; the platform keeps serving. Ctrl-C stops.", flush=True)
                await stop.wait()
            else:
                running_day.cancel()
                await asyncio.gather(running_day, return_exceptions=True)
            stopping.cancel()
        finally:
            await client.close()
        print("\nStopping…", flush=True)


def _credentials(ops_token: str, urls: dict[str, str], osmand_url: str, tenant: Tenant) -> dict[str, Any]:
    return {
        "ops_token": ops_token,
        "merchant_api_key": tenant.merchant_keys[0],
        "merchant_api_keys": tenant.merchant_keys,
        "depot": {
            "id": tenant.depot_ids[0],
            "lat": BERLIN.depots[0].lat,
            "lon": BERLIN.depots[0].lon,
            "timezone": BERLIN.timezone,
        },
        "depots": [
            {"id": d, "lat": s.lat, "lon": s.lon, "timezone": BERLIN.timezone}
            for d, s in zip(tenant.depot_ids, BERLIN.depots, strict=True)
        ],
        "devices": [
            {"vehicle_id": device.vehicle_id, "device_id": device.device_id, "device_key": device.key}
            for device, *_ in tenant.devices
        ],
        "urls": urls | {"osmand": osmand_url},
    }


def _write_private(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    tmp.chmod(0o600)
    tmp.rename(path)


def _summary(folder: Path, observations: Observations, config: SimConfig) -> None:
    from lastmile.sim.demo import write_report

    figures = kpis(observations, config)
    write_report(folder, observations, config, figures)
    print("\n" + table(figures) + f"\n\nReport: {folder / 'index.html'}", flush=True)


class StatusLine:
    """One line rewritten in place on a terminal; a line every 10 s when the output is a log."""

    def __init__(self, tz: Any) -> None:
        self.tz = tz
        self.last = 0.0
        self.tracking_shown = False

    def update(self, counts: dict[str, Any]) -> None:
        counts = dict(counts)
        at = datetime.fromtimestamp(counts.pop("clock"), self.tz)
        tracking = counts.pop("tracking_url", None)
        if tracking and not self.tracking_shown:
            self.tracking_shown = True
            clear = f"\r{' ' * 150}\r" if sys.stderr.isatty() else ""
            sys.stderr.write(f"{clear}  a tracking page: {tracking}\n")
        line = f"{at:%H:%M}  " + "  ".join(f"{k} {v}" for k, v in counts.items())
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line[:150].ljust(150))
        elif time.monotonic() - self.last >= 10:
            self.last = time.monotonic()
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def banner(var: Path, urls: dict[str, str], osmand_url: str, config: SimConfig) -> str:
    lines = [
        "",
        "Lastmile is running (embedded mode: one process, in-memory bus, SQLite under "
        f"{var}/) with a simulated city:",
        f"  {config.orders} orders from {len(BERLIN.depots)} depots in Berlin, {config.vehicles} vehicles, "
        f"the clock {config.speed:g} times faster than real time (LASTMILE_SIM=0: the platform alone).",
        "",
    ]
    for name in PORTS:
        lines.append(f"  {name:<13} {urls[name]}/docs    metrics: {urls[name]}/metrics")
    lines += [
        f"  {'osmand':<13} {osmand_url}",
        "",
        f"  credentials   {var.parent / 'credentials.json'}  (ops token, merchant API keys, device keys)",
        f"  messages      {var / 'outbox'}/  (what customers receive)",
        "",
        "  Post an order of your own:",
        f"    curl -s -X POST {urls['order-intake']}/v1/orders \\",
        f'      -H "Authorization: Bearer $(jq -r .merchant_api_key {var.parent}/credentials.json)" \\',
        f"      -H 'Content-Type: application/json' -d @{var.parent / 'example-order.json'}",
        "",
        "Ctrl-C stops.",
        "",
    ]
    return "\n".join(lines)
