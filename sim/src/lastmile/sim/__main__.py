"""`make run`: the embedded platform on this machine."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lastmile.common.logging import configure_logging
from lastmile.sim.embedded import OSMAND_PORT, PORTS, serve_forever
from lastmile.sim.live import LiveConfig, run_city


def main() -> None:
    configure_logging("lastmile", os.environ.get("LASTMILE_LOG_LEVEL", "WARNING"), "text")
    offset = int(os.environ.get("LASTMILE_PORT_OFFSET", "0"))  # to run beside another instance
    ports = {name: port + offset for name, port in PORTS.items()}
    osmand = int(os.environ.get("LASTMILE_OSMAND_PORT", OSMAND_PORT + offset))
    var = Path(os.environ.get("LASTMILE_VAR", "var"))
    if os.environ.get("LASTMILE_SIM", "1").lower() in ("0", "false", "no", "off"):
        asyncio.run(serve_forever(var, ports, osmand))
        return
    live = LiveConfig(
        speed=float(os.environ.get("LASTMILE_SIM_SPEED", LiveConfig.speed)),
        orders=int(os.environ.get("LASTMILE_SIM_ORDERS", LiveConfig.orders)),
        vehicles=int(os.environ.get("LASTMILE_SIM_VEHICLES", LiveConfig.vehicles)),
        seed=int(os.environ.get("LASTMILE_SIM_SEED", LiveConfig.seed)),
    )
    asyncio.run(run_city(var / "city", ports, osmand, live))


if __name__ == "__main__":
    main()
