"""`make demo`: a whole compressed day, then the KPI table, var/report/index.html and var/report/kpis.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common.logging import configure_logging
from lastmile.sim.client import Platform
from lastmile.sim.embedded import PORTS, running
from lastmile.sim.observe import Observations
from lastmile.sim.report import html_report, kpis, table
from lastmile.sim.runner import Day, SimConfig, set_up, start_clock

log = logging.getLogger("lastmile.demo")


async def embedded_day(
    config: SimConfig, var: Path, ports: dict[str, int] | None = None
) -> tuple[Observations, dict[str, Any]]:
    clock = start_clock(config)
    async with running(var, clock=clock, ports=ports or PORTS) as platform:
        client = Platform({name: platform.url(name) for name in platform.ports}, platform.ops_token)
        try:
            tenant = await set_up(client, config)
            day = Day(client, clock, config, var / "outbox")
            observations = await day.run(tenant, on_status=_status_line)
        finally:
            await client.close()
    return observations, kpis(observations, config)


_last_line = [0.0]


def _status_line(counts: dict[str, int]) -> None:
    """One updating line on a terminal; a line every 10 s in a log."""
    clock = datetime.fromtimestamp(counts.pop("clock"), ZoneInfo("Europe/Berlin"))
    line = f"{clock:%H:%M} " + "  ".join(f"{k} {v}" for k, v in counts.items())
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line[:150].ljust(120))
    elif time.monotonic() - _last_line[0] >= 10:
        _last_line[0] = time.monotonic()
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--vehicles", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=180.0)
    parser.add_argument("--var", default="var/demo")
    parser.add_argument("--report", default="var/report")
    args = parser.parse_args()
    configure_logging("lastmile", "WARNING", "text")
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(day=day, seed=args.seed, orders=args.orders, vehicles=args.vehicles, speed=args.speed)
    var = Path(args.var)
    if var.exists():
        import shutil

        shutil.rmtree(var)
    began = time.monotonic()
    observations, figures = asyncio.run(embedded_day(config, var))
    figures["wall_seconds"] = round(time.monotonic() - began, 1)
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    (report / "kpis.json").write_text(json.dumps(figures, indent=2, default=str))
    (report / "index.html").write_text(html_report(observations, config, figures))
    print()
    print(table(figures))
    print(f"\nReport: {report / 'index.html'}  figures: {report / 'kpis.json'}")


if __name__ == "__main__":
    main()

