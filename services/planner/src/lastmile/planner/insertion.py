"""The fast re-plan for a new order: its cheapest feasible insertion into the routes as they are, no other stop
moved. Pure arithmetic on the engines' input; when an order does not fit this way, VROOM re-plans the day.
"""

from __future__ import annotations

from typing import Any

from lastmile.planner.problem import (
    SolverInput,
    SolverJob,
    SolverVehicle,
    Steps,
    route_cost,
    route_from_steps,
    timeline,
)


def insert_new(inp: SolverInput, *, partial: bool = False) -> dict[str, Any] | None:
    """Routes are the vehicles' `initial` orders; every job on none of them is inserted where it costs least
    without breaking a window, a capacity, a shift or a stop limit. None when some job does not fit (or a
    vehicle has what this arithmetic does not model: breaks, driving or distance limits), unless `partial`:
    then the jobs that do not fit are reported unassigned."""
    if any(v.breaks or v.max_travel_time or v.max_distance for v in inp.vehicles):
        return None
    routes = {v.id: list(v.initial) for v in inp.vehicles}
    placed = {j for r in routes.values() for j in r}
    jobs = {j.id: j for j in inp.jobs}
    if placed - jobs.keys():
        return None
    current = {v.id: timeline(inp, v, routes[v.id], set(), jobs) for v in inp.vehicles}
    left = []
    for job in sorted((j for j in inp.jobs if j.id not in placed), key=_tightness):
        best = _cheapest(inp, job, routes, current, jobs)
        if best is None:
            if not partial:
                return None
            left.append({"id": job.id})
            continue
        vehicle, position, steps = best
        routes[vehicle.id].insert(position, job.id)
        current[vehicle.id] = steps
    by_id = {v.id: v for v in inp.vehicles}
    return {
        "routes": [route_from_steps(by_id[vid], current[vid]) for vid, r in routes.items() if r],
        "unassigned": left,
    }


def _tightness(job: SolverJob) -> int:
    return sum(end - start for start, end in job.windows)


def _cheapest(
    inp: SolverInput,
    job: SolverJob,
    routes: dict[int, list[int]],
    current: dict[int, Steps],
    jobs: dict[int, SolverJob],
) -> tuple[SolverVehicle, int, Steps] | None:
    """Positions ranked by the detour they cost; only the most promising few get their whole timeline checked
    (a day of a thousand stops would otherwise take seconds of arithmetic in Python)."""
    candidates = []
    for vehicle in inp.vehicles:
        route = routes[vehicle.id]
        if not job.skills <= vehicle.skills or (
            vehicle.max_tasks is not None and len(route) >= vehicle.max_tasks
        ):
            continue
        if _fits(vehicle, [*route, job.id], jobs):
            candidates += [(d, vehicle, p) for d, p in _detours(inp, vehicle, route, job, jobs)[:POSITIONS]]
    best: tuple[float, SolverVehicle, int, Steps] | None = None
    for _, vehicle, position in sorted(candidates, key=lambda c: c[0])[:CHECKED]:
        route, before = routes[vehicle.id], current[vehicle.id]
        steps = timeline(inp, vehicle, [*route[:position], job.id, *route[position:]], set(), jobs)
        if _late(steps) > _late(before) or steps[-1]["arrival"] > max(
            vehicle.window[1], before[-1]["arrival"]
        ):
            continue
        delta = _cost(vehicle, steps) - (_cost(vehicle, before) if route else 0.0)
        if best is None or delta < best[0]:
            best = (delta, vehicle, position, steps)
    return None if best is None else best[1:]


POSITIONS = 6  # per route, the cheapest detours
CHECKED = 40  # over all routes, the positions whose timeline is checked


def _detours(
    inp: SolverInput, vehicle: SolverVehicle, route: list[int], job: SolverJob, jobs: dict[int, SolverJob]
) -> list[tuple[float, int]]:
    m = inp.matrices[vehicle.profile]
    stops = [
        vehicle.start,
        *(jobs[j].location for j in route),
        vehicle.end if vehicle.end is not None else -1,
    ]
    x = job.location
    ranked = []
    for p in range(len(route) + 1):
        a, b = stops[p], stops[p + 1]
        back = 0 if b < 0 else int(m.durations[x, b]) - int(m.durations[a, b])
        ranked.append((int(m.durations[a, x]) + back, p))
    ranked.sort()
    return [(float(d), p) for d, p in ranked]


def _fits(vehicle: SolverVehicle, route: list[int], jobs: dict[int, SolverJob]) -> bool:
    """Deliveries leave the depot on board, pickups come on board: the load never exceeds the capacity."""
    load = [sum(d) for d in zip(*(jobs[j].delivery for j in route), strict=True)]
    if any(x > c for x, c in zip(load, vehicle.capacity, strict=True)):
        return False
    for j in route:
        load = [x - d + p for x, d, p in zip(load, jobs[j].delivery, jobs[j].pickup, strict=True)]
        if any(x > c for x, c in zip(load, vehicle.capacity, strict=True)):
            return False
    return True


def _late(steps: Steps) -> int:
    return sum(int(v["duration"]) for s in steps for v in s["violations"])


def _cost(vehicle: SolverVehicle, steps: Steps) -> float:
    return route_cost(
        vehicle, int(steps[-1]["arrival"]) - int(steps[0]["arrival"]), int(steps[-1]["distance"])
    )
