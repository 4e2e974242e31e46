"""The PyVRP adapter (hybrid genetic search): a SolverInput in, a solution in VROOM's JSON shape out.

PyVRP plans waves beside VROOM: it finds shorter routes for time windows and capacities, and it models
reloads at the depot (multiple trips), which VROOM does not. It does not model skills, breaks or stop limits;
`eligible` says when an input is within what it models.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pyvrp
from pyvrp.exceptions import PenaltyBoundWarning
from pyvrp.stop import MaxRuntime

from lastmile.planner.problem import SolverInput, SolverJob, SolverVehicle, route_from_steps, timeline


def cost_scale(vehicles: tuple[SolverVehicle, ...]) -> float:
    """PyVRP's costs are integers per metre and per second, and its penalties for overloads and lateness are
    bounded: scale ours (cents per km and per hour) so that the smallest unit cost is 1, not to millions."""
    units = [x for v in vehicles for x in (v.per_km / 1000, v.per_hour / 3600) if x > 0]
    return 1 / min(units) if units else 1.0


def eligible(inp: SolverInput) -> bool:
    return (
        bool(inp.jobs)
        and bool(inp.vehicles)
        and not inp.needs_vroom()
        and all(v.end == v.start and not v.max_distance for v in inp.vehicles)
    )


def solve(
    inp: SolverInput,
    seconds: float,
    *,
    seed: int = 1,
    all_required: bool = False,
    start: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Best solution found in `seconds`; jobs are optional (so a tight day leaves some out) unless told.
    `start`, another engine's solution (VROOM's shape), is where the search begins."""
    data, types, clients = _data(inp, all_required)
    initial = _initial(data, inp, types, clients, start) if start else None
    with warnings.catch_warnings():
        # jobs no vehicle can serve raise the penalties to their bound: expected here, they are left out
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        result = pyvrp.solve(
            data,
            stop=MaxRuntime(seconds),
            seed=seed,
            display=False,
            collect_stats=False,
            initial_solution=initial,
        )
    best = result.best
    if not best.is_feasible():
        return {"routes": [], "unassigned": [{"id": j.id} for j in inp.jobs], "feasible": False}
    used: dict[int, list[SolverVehicle]] = {i: list(vs) for i, vs in enumerate(types)}
    routes, served = [], set()
    for route in best.routes():
        vehicle = used[route.vehicle_type()].pop(0)
        job_ids, reloads = _visits(route, clients)
        served.update(job_ids)
        routes.append(route_from_steps(vehicle, timeline(inp, vehicle, job_ids, reloads)))
    unassigned = [{"id": j.id} for j in inp.jobs if j.id not in served]
    return {"routes": routes, "unassigned": unassigned, "feasible": True}


def _initial(
    data: pyvrp.ProblemData,
    inp: SolverInput,
    types: list[list[SolverVehicle]],
    clients: list[int],
    start: dict[str, Any],
) -> pyvrp.Solution | None:
    """Another engine's routes as PyVRP's first solution (single-window jobs only; None if it does not map)."""
    type_of = {v.id: k for k, vs in enumerate(types) for v in vs}
    client_of = {job_id: i for i, job_id in enumerate(clients)}
    if len(client_of) != len(clients):
        return None
    routes = []
    for route in start.get("routes", []):
        visits = [client_of[s["id"]] for s in route["steps"] if s["type"] == "job"]
        if visits:
            activities = [pyvrp.Activity(pyvrp.ActivityType.CLIENT, c) for c in visits]
            routes.append(pyvrp.Route(data, activities, type_of[route["vehicle"]]))
    try:
        return pyvrp.Solution(data, routes)
    except (RuntimeError, ValueError, IndexError):
        return None


def _visits(route: Any, clients: list[int]) -> tuple[list[int], set[int]]:
    job_ids: list[int] = []
    reloads: set[int] = set()
    activities = list(route.schedule())
    for activity in activities[1:-1]:
        if activity.is_depot():
            reloads.add(len(job_ids))
        else:
            job_ids.append(clients[activity.idx])
    return job_ids, reloads


def _data(
    inp: SolverInput, all_required: bool
) -> tuple[pyvrp.ProblemData, list[list[SolverVehicle]], list[int]]:
    profiles = inp.profiles
    size = inp.matrices[profiles[0]].size
    depot_locations = sorted(
        {v.start for v in inp.vehicles} | {v.reload_at for v in inp.vehicles if v.reload_at}
    )
    depot_index = {loc: i for i, loc in enumerate(depot_locations)}
    depots = [pyvrp.Depot(location=loc) for loc in depot_locations]
    locations = [pyvrp.Location(x=0, y=0) for _ in range(size)]
    scale = cost_scale(inp.vehicles)
    prize = _prize(inp, scale)
    client_list: list[pyvrp.Client] = []
    clients: list[int] = []  # client index → job id
    groups: list[pyvrp.ClientGroup] = []
    for job in inp.jobs:
        members = []
        for early, late in job.windows:
            members.append(len(client_list))
            clients.append(job.id)
            client_list.append(
                _client(
                    job, early, late, all_required and len(job.windows) == 1, 0 if all_required else prize
                )
            )
        if len(members) > 1:
            groups.append(pyvrp.ClientGroup(clients=members, required=all_required))
    types = _vehicle_groups(inp.vehicles)
    vehicle_types = [_vehicle_type(vs, depot_index, profiles, scale) for vs in types]
    data = pyvrp.ProblemData(
        locations=locations,
        clients=client_list,
        depots=depots,
        vehicle_types=vehicle_types,
        distance_matrices=[_int_matrix(inp.matrices[p].distances) for p in profiles],
        duration_matrices=[_int_matrix(inp.matrices[p].durations) for p in profiles],
        groups=groups,
    )
    return data, types, clients


def _int_matrix(values: Any) -> Any:
    return np.asarray(values, dtype=np.int64)


def _prize(inp: SolverInput, scale: float) -> int:
    """Serving a job must beat leaving it out, yet the prize must stay within PyVRP's penalties' reach (an
    astronomic prize makes a capacity violation look cheaper than a reload): ten times the costliest round
    trip of the day, plus the costliest vehicle's fixed cost."""
    worst = 0
    for v in inp.vehicles:
        m = inp.matrices[v.profile]
        trip = int(m.distances.max()) * 2 * v.per_km / 1000 + int(m.durations.max()) * 2 * v.per_hour / 3600
        worst = max(worst, round((trip + v.fixed_cost) * scale))
    return 10 * worst + 1


def _client(job: SolverJob, early: int, late: int, required: bool, prize: int) -> pyvrp.Client:
    return pyvrp.Client(
        location=job.location,
        delivery=list(job.delivery),
        pickup=list(job.pickup),
        service_duration=job.service,
        tw_early=early,
        tw_late=late,
        prize=0 if required else prize,
        required=required,
    )


def _vehicle_groups(vehicles: tuple[SolverVehicle, ...]) -> list[list[SolverVehicle]]:
    """Identical vehicles share one vehicle type, which keeps the search from trying symmetric swaps."""
    groups: dict[SolverVehicle, list[SolverVehicle]] = {}
    for v in vehicles:
        groups.setdefault(replace(v, id=0, initial=()), []).append(v)
    return list(groups.values())


def _vehicle_type(
    vs: list[SolverVehicle], depot_index: dict[int, int], profiles: list[str], scale: float
) -> pyvrp.VehicleType:
    v = vs[0]
    reload = [depot_index[v.reload_at]] if v.reload_at is not None else []
    return pyvrp.VehicleType(
        num_available=len(vs),
        capacity=list(v.capacity),
        start_depot=depot_index[v.start],
        end_depot=depot_index[v.start],
        fixed_cost=round(v.fixed_cost * scale),
        tw_early=v.window[0],
        tw_late=v.window[1],
        unit_distance_cost=round(v.per_km / 1000 * scale),
        unit_duration_cost=round(v.per_hour / 3600 * scale),
        profile=profiles.index(v.profile),
        reload_depots=reload,
    )
