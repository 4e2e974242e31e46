"""Travel times and distances between points, behind one interface (coordinates now; OSRM/Valhalla later)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

SPEED_KMH = {"van": 28.0, "car": 32.0, "cargo_bike": 16.0, "bike": 15.0}


@dataclass(frozen=True)
class Matrix:
    durations: list[list[int]]  # seconds
    distances: list[list[int]]  # metres


class TravelTimes(Protocol):
    def matrix(self, points: Sequence[tuple[float, float]], profile: str) -> Matrix: ...


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True)
class CoordinateTravelTimes:
    """Great-circle distance × a detour factor, at a speed per vehicle profile."""

    detour: float = 1.35
    speeds_kmh: dict[str, float] = field(default_factory=lambda: dict(SPEED_KMH))

    def matrix(self, points: Sequence[tuple[float, float]], profile: str) -> Matrix:
        mps = self.speeds_kmh.get(profile, 25.0) / 3.6
        n = len(points)
        distances = [[0] * n for _ in range(n)]
        durations = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                d = haversine_m(points[i], points[j]) * self.detour
                distances[i][j] = distances[j][i] = round(d)
                durations[i][j] = durations[j][i] = round(d / mps)
        return Matrix(durations=durations, distances=distances)
