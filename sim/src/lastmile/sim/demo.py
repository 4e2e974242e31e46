"""`make demo`: a whole compressed day, then the KPI table, var/report/index.html and var/report/kpis.json.

The platform runs in processes of its own (`--mode embedded`: one process on SQLite; `--mode distributed`: the
four services on Kafka and PostgreSQL); the simulator reaches it over HTTP only."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common.clock import Clock
from lastmile.common.logging import configure_logging
from lastmile.sim import launch
from lastmile.sim.embedded import PORTS
from lastmile.sim.live import StatusLine
from lastmile.sim.observe import Observations
from lastmile.sim.report import html_report, kpis, order_rows, table
from lastmile.sim.runner import Day, SimConfig, set_up, start_clock
from lastmile.sim.traffic import Traffic

STARTUP_S = {
    "embedded": 8.0,
    "distributed": 45.0,
}  # real seconds the platform gets before the day's clock runs


async def run_day(
    config: SimConfig,
    var: Path,
    ports: dict[str, int],
    mode: str = "embedded",
    *,
    kafka: str = "127.0.0.1:19092",
    postgres: str = "127.0.0.1:55432",
    status: bool = True,
    during: Callable[[Clock, launch.Launched], Coroutine[Any, Any, None]] | None = None,
) -> tuple[Observations, dict[str, Any]]:
    """The day against a platform started for it; `during` runs beside the day (to break things on purpose)."""
    clock = start_clock(config, STARTUP_S[mode])
    calibration = launch.calibrated(Traffic(enabled=config.traffic))
    platform: AbstractAsyncContextManager[launch.Launched] = (
        launch.embedded(var, ports, clock, calibration)
        if mode == "embedded"
        else launch.distributed(var, ports, clock, kafka, postgres, env=calibration)
    )
    async with platform as launched:
        tenant = await set_up(launched.platform, config)
        day = Day(launched.platform, clock, config, var / "outbox")
        on_status = StatusLine(ZoneInfo(config.city.timezone)).update if status else None
        beside = asyncio.create_task(during(clock, launched)) if during else None
        try:
            observations = await day.run(tenant, on_status=on_status)
        finally:
            if beside is not None:
                beside.cancel()
                await asyncio.gather(beside, return_exceptions=True)
    return observations, kpis(observations, config)


def write_report(
    folder: Path, observations: Observations, config: SimConfig, figures: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kpis.json").write_text(json.dumps(figures, indent=2, default=str))
    (folder / "index.html").write_text(html_report(observations, config, figures))
    with (folder / "drivers.jsonl").open("w") as out:
        for vehicle in observations.vehicles.values():
            for entry in vehicle.log:
                out.write(json.dumps({"vehicle_id": vehicle.vehicle_id, **entry}) + "\n")
    rows = order_rows(observations)
    with (folder / "orders.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["seq"])
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("embedded", "distributed"), default="embedded")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--vehicles", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=300.0)
    parser.add_argument("--no-traffic", action="store_true", help="every leg at the planner's expected speed")
    parser.add_argument("--var", default="var/demo")
    parser.add_argument("--report", default="var/report")
    parser.add_argument(
        "--base-port", type=int, default=8101 + int(os.environ.get("LASTMILE_PORT_OFFSET", "0"))
    )
    args = parser.parse_args()
    configure_logging("lastmile", "WARNING", "text")
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(
        day=day,
        seed=args.seed,
        orders=args.orders,
        vehicles=args.vehicles,
        speed=args.speed,
        traffic=not args.no_traffic,
    )
    var = Path(args.var)
    shutil.rmtree(var, ignore_errors=True)
    began = time.monotonic()
    ports = {name: args.base_port + i for i, name in enumerate(PORTS)}
    kafka = os.environ.get("LASTMILE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    postgres = os.environ.get("LASTMILE_DEMO_POSTGRES", "127.0.0.1:55432")
    observations, figures = asyncio.run(
        run_day(config, var, ports, args.mode, kafka=kafka, postgres=postgres)
    )
    figures["mode"] = args.mode
    figures["wall_seconds"] = round(time.monotonic() - began, 1)
    write_report(Path(args.report), observations, config, figures)
    print()
    print(table(figures))
    print(f"\nReport: {Path(args.report) / 'index.html'}  figures: {Path(args.report) / 'kpis.json'}")


if __name__ == "__main__":
    main()
