"""Travel times and distances between points, behind one interface: from coordinates (the embedded default),
or from an OSRM (`/table`) or Valhalla (`/sources_to_targets`) server; every matrix cached once computed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
import numpy as np

from lastmile.planner.problem import Matrix

Points = Sequence[tuple[float, float]]  # (lat, lon)

SPEED_KMH = {"van": 28.0, "car": 32.0, "cargo_bike": 16.0, "bike": 15.0}
# Share of the free speed by local hour: rush hours are slower for motor traffic; bikes are not held up.
RUSH = {7: 0.75, 8: 0.7, 9: 0.8, 16: 0.8, 17: 0.7, 18: 0.75}
UNAFFECTED = {"cargo_bike", "bike"}


class TravelTimes(Protocol):
    async def matrix(self, points: Points, profile: str, depart: datetime) -> Matrix: ...

    async def close(self) -> None: ...


class MatrixUnavailable(RuntimeError):
    """The road-network server did not answer with a usable matrix."""


@dataclass(frozen=True)
class CoordinateTravelTimes:
    """Great-circle distance × a detour factor, at a speed per profile that varies by hour of day."""

    detour: float = 1.35
    speeds_kmh: dict[str, float] = field(default_factory=lambda: dict(SPEED_KMH))
    hourly: dict[int, float] = field(default_factory=lambda: dict(RUSH))

    def speed_mps(self, profile: str, hour: int) -> float:
        factor = 1.0 if profile in UNAFFECTED else self.hourly.get(hour, 1.0)
        return self.speeds_kmh.get(profile, 25.0) * factor / 3.6

    async def matrix(self, points: Points, profile: str, depart: datetime) -> Matrix:
        return await asyncio.to_thread(self.compute, points, profile, depart.hour)

    def compute(self, points: Points, profile: str, hour: int) -> Matrix:
        rad = np.radians(np.asarray(points, dtype=np.float64).reshape(-1, 2))
        lat, lon = rad[:, 0][:, None], rad[:, 1][:, None]
        h = np.sin((lat.T - lat) / 2) ** 2 + np.cos(lat) * np.cos(lat.T) * np.sin((lon.T - lon) / 2) ** 2
        metres = 2 * 6371008.8 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) * self.detour
        seconds = metres / self.speed_mps(profile, hour)
        return Matrix(np.rint(seconds).astype(np.int64), np.rint(metres).astype(np.int64))

    async def close(self) -> None:
        pass


class _Blocked:
    """Road servers cap the size of one matrix request: ask block by block and assemble."""

    block: int

    async def matrix(self, points: Points, profile: str, depart: datetime) -> Matrix:
        n = len(points)
        durations = np.zeros((n, n), dtype=np.int64)
        distances = np.zeros((n, n), dtype=np.int64)
        for i in range(0, n, self.block):
            for j in range(0, n, self.block):
                rows, cols = range(i, min(n, i + self.block)), range(j, min(n, j + self.block))
                dur, dist = await self.table([points[k] for k in rows], [points[k] for k in cols], profile)
                durations[i : rows.stop, j : cols.stop] = dur
                distances[i : rows.stop, j : cols.stop] = dist
        return Matrix(durations, distances)

    async def table(self, sources: Points, targets: Points, profile: str) -> tuple[Any, Any]:
        raise NotImplementedError


class OsrmTravelTimes(_Blocked):
    """OSRM's table service: `GET /table/v1/{profile}/{lon,lat;...}?sources=..&destinations=..
    &annotations=duration,distance` answers `{"code": "Ok", "durations": [[s]], "distances": [[m]]}`."""

    def __init__(
        self, base_url: str, profiles: dict[str, str], *, block: int = 100, timeout_s: float = 30
    ) -> None:
        self.profiles, self.block = profiles, block
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def table(self, sources: Points, targets: Points, profile: str) -> tuple[Any, Any]:
        coords = ";".join(f"{lon:.6f},{lat:.6f}" for lat, lon in (*sources, *targets))
        n = len(sources)
        params = {
            "sources": ";".join(str(i) for i in range(n)),
            "destinations": ";".join(str(n + j) for j in range(len(targets))),
            "annotations": "duration,distance",
        }
        reply = await self.http.get(
            f"/table/v1/{self.profiles.get(profile, 'driving')}/{coords}", params=params
        )
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        if reply.status_code != 200 or body.get("code") != "Ok":
            raise MatrixUnavailable(f"OSRM table: HTTP {reply.status_code} {body.get('code', '')}")
        return _unreachable_as_far(body["durations"]), _unreachable_as_far(body["distances"])

    async def close(self) -> None:
        await self.http.aclose()


class ValhallaTravelTimes(_Blocked):
    """Valhalla's matrix service: `POST /sources_to_targets` with sources, targets and costing answers
    `{"sources_to_targets": [[{"time": s, "distance": km, ...}]], "units": "kilometers"}`."""

    def __init__(
        self, base_url: str, costing: dict[str, str], *, block: int = 50, timeout_s: float = 30
    ) -> None:
        self.costing, self.block = costing, block
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def table(self, sources: Points, targets: Points, profile: str) -> tuple[Any, Any]:
        body = {
            "sources": [{"lat": lat, "lon": lon} for lat, lon in sources],
            "targets": [{"lat": lat, "lon": lon} for lat, lon in targets],
            "costing": self.costing.get(profile, "auto"),
            "units": "kilometers",
        }
        reply = await self.http.post("/sources_to_targets", json=body)
        if reply.status_code != 200:
            raise MatrixUnavailable(f"Valhalla sources_to_targets: HTTP {reply.status_code}")
        rows = reply.json()["sources_to_targets"]
        times = [[c.get("time") for c in row] for row in rows]
        km = [[None if c.get("distance") is None else c["distance"] * 1000 for c in row] for row in rows]
        return _unreachable_as_far(times), _unreachable_as_far(km)

    async def close(self) -> None:
        await self.http.aclose()


UNREACHABLE = 10**7  # seconds or metres: far enough that no engine routes through it


def _unreachable_as_far(rows: list[list[float | None]]) -> Any:
    return [[UNREACHABLE if v is None else round(v) for v in row] for row in rows]


class CachedTravelTimes:
    """Each (profile, hour, points) matrix computed once; a re-plan with the same stops reuses it."""

    def __init__(self, inner: TravelTimes, size: int = 32) -> None:
        self.inner, self.size = inner, size
        self._cache: OrderedDict[tuple[str, int, str], Matrix] = OrderedDict()
        self.misses = 0

    async def matrix(self, points: Points, profile: str, depart: datetime) -> Matrix:
        key = (profile, depart.hour, _digest(points))
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        self.misses += 1
        matrix = await self.inner.matrix(points, profile, depart)
        self._cache[key] = matrix
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return matrix

    async def close(self) -> None:
        await self.inner.close()


def _digest(points: Points) -> str:
    return hashlib.sha256(np.asarray(points, dtype=np.float64).tobytes()).hexdigest()


def portable(travel: TravelTimes) -> CoordinateTravelTimes | None:
    """Travel times the solver's process can compute on its own (no I/O, no state), or None: a road server's
    are fetched by the service and sent along with the problem."""
    inner = travel.inner if isinstance(travel, CachedTravelTimes) else travel
    return inner if isinstance(inner, CoordinateTravelTimes) else None
