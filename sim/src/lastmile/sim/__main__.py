"""`make run`: the embedded platform on this machine."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lastmile.common.logging import configure_logging
from lastmile.sim.embedded import serve_forever


def main() -> None:
    configure_logging("lastmile", os.environ.get("LASTMILE_LOG_LEVEL", "WARNING"), "text")
    asyncio.run(serve_forever(Path(os.environ.get("LASTMILE_VAR", "var"))))


if __name__ == "__main__":
    main()
