"""Traffic: speed varying with the time of day, random slowdowns on some legs, a few incidents."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Relative speed by local hour: rush hours at 8 and 17, free-flowing early and late.
PROFILE = {
    5: 1.15, 6: 1.05, 7: 0.8, 8: 0.7, 9: 0.8, 10: 0.9, 11: 0.9, 12: 0.85, 13: 0.85, 14: 0.85,
    15: 0.8, 16: 0.72, 17: 0.68, 18: 0.75, 19: 0.9, 20: 1.0, 21: 1.1, 22: 1.15,
}  # fmt: skip


@dataclass(frozen=True)
class Traffic:
    """The speed factor a vehicle meets on a leg, from its own random stream (so a day can be replayed)."""

    slowdown_share: float = 0.15  # legs with a random slowdown
    incident_share: float = 0.01  # legs through an incident
    enabled: bool = True

    def hour_factor(self, hour: float) -> float:
        if not self.enabled:
            return 1.0
        low = int(math.floor(hour)) % 24
        high = (low + 1) % 24
        t = hour - math.floor(hour)
        return PROFILE.get(low, 1.1) * (1 - t) + PROFILE.get(high, 1.1) * t

    def leg_factor(self, rng: random.Random) -> float:
        """Multiplier on the leg's speed: mostly near 1, sometimes a slowdown, rarely an incident."""
        if not self.enabled:
            return 1.0
        roll = rng.random()
        if roll < self.incident_share:
            return rng.uniform(0.25, 0.45)
        if roll < self.incident_share + self.slowdown_share:
            return rng.uniform(0.5, 0.8)
        return max(0.6, min(1.3, rng.gauss(1.0, 0.08)))
