"""The routing problem as every engine sees it: integer times, amounts and matrices, no orders, no dates.

Pure data and arithmetic (no I/O, no engine import), so that VROOM and PyVRP read the same input and answer in
the same shape (VROOM's solution JSON), and so that the input pickles to a solver process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Steps = list[dict[str, Any]]


@dataclass(frozen=True)
class Matrix:
    """Travel between every pair of a problem's locations, for one vehicle profile."""

    durations: NDArray[np.int64]  # seconds
    distances: NDArray[np.int64]  # metres

    @classmethod
    def of(cls, durations: Any, distances: Any) -> Matrix:
        return cls(np.asarray(durations, dtype=np.int64), np.asarray(distances, dtype=np.int64))

    @property
    def size(self) -> int:
        return int(self.durations.shape[0])


@dataclass(frozen=True)
class SolverJob:
    id: int
    location: int
    service: int
    delivery: tuple[int, ...]
    pickup: tuple[int, ...]
    windows: tuple[tuple[int, int], ...]
    skills: frozenset[int] = frozenset()
    priority: int = 0


@dataclass(frozen=True)
class SolverBreak:
    id: int
    windows: tuple[tuple[int, int], ...]
    service: int


@dataclass(frozen=True)
class SolverVehicle:
    id: int
    profile: str
    start: int  # location index
    end: int | None  # None: the route ends at its last stop
    capacity: tuple[int, ...]
    window: tuple[int, int]
    skills: frozenset[int] = frozenset()
    breaks: tuple[SolverBreak, ...] = ()
    fixed_cost: int = 0  # cost units (cents) when used
    per_hour: int = 3600  # cost units per hour on the road (driving, waiting, service)
    per_km: int = 0
    max_tasks: int | None = None
    max_travel_time: int | None = None
    max_distance: int | None = None
    initial: tuple[int, ...] = ()  # job ids in order: the route to start from (stability)
    reload_at: int | None = None  # location where it may reload between trips (multi-trip engines only)


@dataclass(frozen=True)
class SolverInput:
    jobs: tuple[SolverJob, ...]
    vehicles: tuple[SolverVehicle, ...]
    matrices: dict[str, Matrix] = field(default_factory=dict)

    @property
    def profiles(self) -> list[str]:
        return sorted({v.profile for v in self.vehicles})

    def needs_vroom(self) -> bool:
        """True when the input uses what only VROOM models (skills, breaks, stop limits, several windows...)."""
        return any(v.skills or v.breaks or v.max_tasks or v.max_travel_time for v in self.vehicles) or any(
            j.skills or len(j.windows) > 1 or j.priority for j in self.jobs
        )


# ---------------------------------------------------------------------------------------------------------
# Reading and judging a solution (VROOM's JSON shape, which the PyVRP adapter also produces)


@dataclass(frozen=True)
class Score:
    """Lexicographic: more priority served, more jobs served, then lower cost."""

    priority: int
    served: int
    cost: float

    def key(self) -> tuple[int, int, float]:
        return (-self.priority, -self.served, self.cost)


def route_cost(vehicle: SolverVehicle, duration: int, distance: int) -> float:
    return vehicle.fixed_cost + vehicle.per_hour * duration / 3600 + vehicle.per_km * distance / 1000


def score(inp: SolverInput, solution: dict[str, Any]) -> Score:
    vehicles = {v.id: v for v in inp.vehicles}
    jobs = {j.id: j for j in inp.jobs}
    served = [s["id"] for r in solution.get("routes", []) for s in r["steps"] if s["type"] == "job"]
    cost = 0.0
    for route in solution.get("routes", []):
        steps = route["steps"]
        duration = int(steps[-1]["arrival"]) - int(steps[0]["arrival"]) if steps else 0
        cost += route_cost(vehicles[route["vehicle"]], duration, int(route.get("distance", 0)))
    return Score(sum(jobs[i].priority for i in served), len(served), cost)


def violations(solution: dict[str, Any]) -> int:
    """Seconds of lateness over every step (VROOM's plan mode reports them as 'delay' violations)."""
    return sum(
        int(v.get("duration", 0))
        for r in solution.get("routes", [])
        for s in r["steps"]
        for v in s.get("violations", [])
        if v.get("cause") == "delay"
    )


def timeline(
    inp: SolverInput,
    vehicle: SolverVehicle,
    job_ids: list[int],
    reloads: set[int],
    jobs: dict[int, SolverJob] | None = None,
) -> Steps:
    """Arrival, waiting and cumulative travel for a fixed sequence, as VROOM would report it.

    `reloads` holds positions (indexes in job_ids) before which the vehicle goes back to its reload point.
    Lateness is reported as a 'delay' violation, the way VROOM's plan mode does.
    """
    matrix = inp.matrices[vehicle.profile]
    jobs = jobs if jobs is not None else {j.id: j for j in inp.jobs}
    t, dist, dur, here = vehicle.window[0], 0, 0, vehicle.start
    steps: Steps = [_step("start", None, here, t, 0, dist, dur)]
    for position, job_id in enumerate(job_ids):
        if position in reloads and vehicle.reload_at is not None:
            leg_t, leg_d = _leg(matrix, here, vehicle.reload_at)
            t, dist, dur, here = t + leg_t, dist + leg_d, dur + leg_t, vehicle.reload_at
            steps.append(_step("reload", None, here, t, 0, dist, dur))
        job = jobs[job_id]
        leg_t, leg_d = _leg(matrix, here, job.location)
        t, dist, dur, here = t + leg_t, dist + leg_d, dur + leg_t, job.location
        window = next((w for w in job.windows if t <= w[1]), job.windows[-1])
        wait = max(0, window[0] - t)
        late = max(0, t - window[1])
        step = _step("job", job_id, here, t, wait, dist, dur)
        step["service"] = job.service
        step["violations"] = [{"cause": "delay", "duration": late}] if late else []
        steps.append(step)
        t += wait + job.service
    if vehicle.end is not None:
        leg_t, leg_d = _leg(matrix, here, vehicle.end)
        t, dist, dur = t + leg_t, dist + leg_d, dur + leg_t
        here = vehicle.end
    steps.append(_step("end", None, here, t, 0, dist, dur))
    return steps


def _leg(matrix: Matrix, a: int, b: int) -> tuple[int, int]:
    return int(matrix.durations[a, b]), int(matrix.distances[a, b])


def _step(
    kind: str, id_: int | None, location: int, t: int, wait: int, dist: int, dur: int
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "type": kind,
        "location_index": location,
        "arrival": t,
        "waiting_time": wait,
        "service": 0,
        "distance": dist,
        "duration": dur,
        "violations": [],
    }
    if id_ is not None:
        step["id"] = id_
    return step


def route_from_steps(vehicle: SolverVehicle, steps: Steps) -> dict[str, Any]:
    late = [v for s in steps for v in s.get("violations", [])]
    return {
        "vehicle": vehicle.id,
        "steps": steps,
        "distance": steps[-1]["distance"],
        "duration": steps[-1]["duration"],
        "violations": late,
    }


# ---------------------------------------------------------------------------------------------------------
# A big day as several smaller ones


def split(inp: SolverInput, size: int) -> list[SolverInput]:
    """Jobs grouped around seeds far apart (by travel time from the depot and from each other), each group
    with a share of the vehicles in proportion to its jobs: VROOM builds its first routes in time that grows
    much faster than the number of jobs, so four days of 500 stops solve far sooner than one of 2,000."""
    parts = -(-len(inp.jobs) // size)
    if parts <= 1 or len(inp.vehicles) < parts:
        return [inp]
    times = next(iter(inp.matrices.values())).durations
    depot = inp.vehicles[0].start
    locations = np.array([j.location for j in inp.jobs])
    seeds = [int(locations[np.argmax(times[depot, locations])])]
    while len(seeds) < parts:
        nearest = np.min(times[np.ix_(np.array(seeds), locations)], axis=0)
        seeds.append(int(locations[np.argmax(nearest)]))
    cap = -(-len(inp.jobs) // parts) + 1
    groups: list[list[SolverJob]] = [[] for _ in seeds]
    by_closeness = sorted(inp.jobs, key=lambda j: min(int(times[s, j.location]) for s in seeds))
    for job in by_closeness:
        order = sorted(range(parts), key=lambda k: int(times[seeds[k], job.location]))
        groups[next((k for k in order if len(groups[k]) < cap), order[0])].append(job)
    fleet = sorted(inp.vehicles, key=lambda v: (v.profile, v.capacity, v.id))
    shares = [max(1, round(len(fleet) * len(g) / len(inp.jobs))) for g in groups]
    dealt: list[list[SolverVehicle]] = [[] for _ in groups]
    for i, vehicle in enumerate(
        fleet
    ):  # deal in turns while a group's share is not met, so each gets the mix
        open_groups = [k for k in range(parts) if len(dealt[k]) < shares[k]] or list(range(parts))
        dealt[open_groups[i % len(open_groups)]].append(vehicle)
    return [
        SolverInput(tuple(g), tuple(d), inp.matrices) for g, d in zip(groups, dealt, strict=True) if g and d
    ]


def merge(solutions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "routes": [r for s in solutions for r in s.get("routes", [])],
        "unassigned": [u for s in solutions for u in s.get("unassigned", [])],
    }
