"""Time, so that the simulated city can run a day faster than real time through every service alike."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Clock:
    """`now()` is `epoch` at the real Unix time `anchor`, and runs `speed` times faster than real time.

    With neither set it is the wall clock. Every service reads time through its clock; the simulator gives all
    of them the same epoch, anchor and speed (settings `LASTMILE_CLOCK_*`), so that separate processes agree on
    the simulated time of day.
    """

    speed: float = 1.0
    epoch: datetime | None = None
    anchor: float | None = None
    _started: float = field(default_factory=time.time, compare=False)

    @property
    def is_wall_clock(self) -> bool:
        return self.epoch is None and self.speed == 1.0

    def now(self) -> datetime:
        if self.is_wall_clock:
            return datetime.now(UTC)
        anchor = self.anchor if self.anchor is not None else self._started
        start = self.epoch or datetime.fromtimestamp(anchor, UTC)
        return start + timedelta(seconds=(time.time() - anchor) * self.speed)

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of clock time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed
