"""A service's background task: runs once started, cancelled and awaited on stop, stoppable twice."""

from __future__ import annotations

import asyncio

from lastmile.common.runtime import BackgroundTask


class Ticker(BackgroundTask):
    name = "ticker"

    def __init__(self) -> None:
        self.ticks = 0
        self.cancelled = False

    async def run(self) -> None:
        try:
            while True:
                self.ticks += 1
                await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_runs_until_stopped() -> None:
    ticker = Ticker()
    await ticker.start()
    while ticker.ticks < 3:
        await asyncio.sleep(0.001)
    await ticker.stop()
    assert ticker.cancelled
    ticks = ticker.ticks
    await asyncio.sleep(0.01)
    assert ticker.ticks == ticks
    await ticker.stop()
