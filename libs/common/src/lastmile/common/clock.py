"""Time, so that the simulated city can run a day faster than real time through every service alike."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Clock:
    """`now()` runs at `speed` times real time from `epoch` (the real time when speed is 1 and epoch unset).

    Every service reads time through its clock; `make run` and the simulator set the same epoch and speed on
    all of them so that a compressed day looks the same everywhere.
    """

    speed: float = 1.0
    epoch: datetime | None = None
    _real_start: float = field(default_factory=time.time, compare=False)

    def now(self) -> datetime:
        if self.epoch is None and self.speed == 1.0:
            return datetime.now(UTC)
        start = self.epoch or datetime.fromtimestamp(self._real_start, UTC)
        return start + timedelta(seconds=(time.time() - self._real_start) * self.speed)

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of clock time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed
