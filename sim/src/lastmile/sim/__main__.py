"""`make run`: the embedded platform on this machine."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lastmile.common.logging import configure_logging
from lastmile.sim.embedded import OSMAND_PORT, PORTS, serve_forever


def main() -> None:
    configure_logging("lastmile", os.environ.get("LASTMILE_LOG_LEVEL", "WARNING"), "text")
    offset = int(os.environ.get("LASTMILE_PORT_OFFSET", "0"))  # to run beside another instance
    ports = {name: port + offset for name, port in PORTS.items()}
    osmand = int(os.environ.get("LASTMILE_OSMAND_PORT", OSMAND_PORT + offset))
    asyncio.run(serve_forever(Path(os.environ.get("LASTMILE_VAR", "var")), ports, osmand))


if __name__ == "__main__":
    main()
