"""Traffic: speed varying with the time of day, random slowdowns on some legs, a few incidents."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Relative speed by local hour for motor traffic: rush hours at 8 and 17. The planner's travel model has the
# same profile (a planner is calibrated to its city); the legs' random factors are what it cannot know.
PROFILE = {7: 0.75, 8: 0.7, 9: 0.8, 16: 0.8, 17: 0.7, 18: 0.75}
UNAFFECTED = {"cargo_bike", "bike"}
# A leg's speed factor (`Traffic.leg_factor`): uniform in these ranges through an incident or a slowdown, else
# normal around 1 with this spread (clipped to 0.7-1.3). `Traffic.mean_time_factor` derives from the same numbers.
INCIDENT = (0.25, 0.45)
SLOWDOWN = (0.5, 0.8)
USUAL_SIGMA = 0.1


@dataclass(frozen=True)
class Traffic:
    """The speed factor a vehicle meets on a leg, from its own random stream (so a day can be replayed)."""

    slowdown_share: float = 0.15  # legs with a random slowdown
    incident_share: float = 0.01  # legs through an incident
    enabled: bool = True

    def hour_factor(self, hour: float, profile: str = "van") -> float:
        if not self.enabled or profile in UNAFFECTED:
            return 1.0
        low = math.floor(hour) % 24
        high = (low + 1) % 24
        t = hour - math.floor(hour)
        return PROFILE.get(low, 1.0) * (1 - t) + PROFILE.get(high, 1.0) * t

    def mean_time_factor(self) -> float:
        """How much longer a leg takes on average than at the profile's speed: E[1/factor] of `leg_factor`
        (uniform slowdowns and incidents in closed form; the clipped normal's 1 + sigma squared). What a planner
        learns from a few weeks of its city's history, unlike any one leg's luck."""
        if not self.enabled:
            return 1.0
        incident = _mean_inverse(*INCIDENT)
        slowdown = _mean_inverse(*SLOWDOWN)
        usual = 1 + USUAL_SIGMA**2
        rest = 1 - self.incident_share - self.slowdown_share
        return self.incident_share * incident + self.slowdown_share * slowdown + rest * usual

    def leg_factor(self, rng: random.Random) -> float:
        """Multiplier on the leg's speed: mostly near 1, sometimes a slowdown, rarely an incident."""
        if not self.enabled:
            return 1.0
        roll = rng.random()
        if roll < self.incident_share:
            return rng.uniform(*INCIDENT)
        if roll < self.incident_share + self.slowdown_share:
            return rng.uniform(*SLOWDOWN)
        return max(0.7, min(1.3, rng.gauss(1.0, USUAL_SIGMA)))


def _mean_inverse(low: float, high: float) -> float:
    """E[1/x] for x uniform on [low, high]."""
    return math.log(high / low) / (high - low)
