"""A depot-day as the engines' problem, and their answer as routes of orders: pure functions, no I/O.

Times are seconds from the service day's local midnight. Re-plans start each vehicle from where it is, pin
parcels already on board to their vehicle, turn promised windows into hard windows, and start the search from
the routes as they are (VROOM's initial routes) so that little moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lastmile.planner.domain import (
    DepotSpec,
    Fleet,
    JobSpec,
    VehicleSpec,
    local_time,
    promise,
    unassigned_reason,
)
from lastmile.planner.problem import (
    Matrix,
    SolverBreak,
    SolverInput,
    SolverJob,
    SolverVehicle,
    route_cost,
    route_from_steps,
    timeline,
)

HORIZON = 2 * 86400
FROM_DEPOT = "@depot"  # skill of parcels still at the depot, held by vehicles that have not left yet


@dataclass(frozen=True)
class VehicleState:
    vehicle: VehicleSpec
    started: bool = False
    position: tuple[float, float] | None = None  # where it is now (None: at the depot)
    loaded: tuple[str, ...] = ()  # orders on board: they stay on this vehicle
    route: tuple[str, ...] = ()  # open stops in their current order: the route to start from
    done: int = 0  # stops already done today (they count against max_stops)
    at_depot: bool = False  # started (parcels on board) but still at the depot: it can take more parcels


@dataclass(frozen=True)
class Problem:
    origin: datetime
    depot: DepotSpec
    day: date
    now: datetime | None
    states: tuple[VehicleState, ...]
    jobs: tuple[JobSpec, ...]
    locations: tuple[tuple[float, float], ...]  # (lat, lon); 0 is the depot
    input: SolverInput
    promised: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # order id → (reason, detail)

    def at(self, seconds: int) -> datetime:
        return (self.origin + timedelta(seconds=seconds)).astimezone(UTC)

    def secs(self, t: datetime) -> int:
        return max(0, min(HORIZON, int((t - self.origin).total_seconds())))

    def departure(self) -> datetime:
        """When the first vehicle may leave: the hour the travel times are computed for."""
        return self.at(min((v.window[0] for v in self.input.vehicles), default=0))

    def with_matrices(self, matrices: dict[str, Matrix]) -> Problem:
        return replace(self, input=replace(self.input, matrices=matrices))

    def job_index(self) -> dict[str, int]:
        return {j.order_id: i + 1 for i, j in enumerate(self.jobs)}


def build_problem(
    depot: DepotSpec,
    states: list[VehicleState],
    jobs: list[JobSpec],
    day: date,
    *,
    now: datetime | None = None,
    promised: dict[str, tuple[datetime, datetime]] | None = None,
) -> Problem:
    promised = promised or {}
    origin = local_time(day, "00:00", depot.timezone)
    skeleton = Problem(origin, depot, day, now, tuple(states), (), (), SolverInput((), ()), promised)
    fleet = Fleet(depot=depot, day=day, vehicles=tuple(s.vehicle for s in states), now=now)
    kept, skipped = [], {}
    for job in jobs:
        reason = _skip(job, fleet, job.order_id in promised)
        if reason:
            skipped[job.order_id] = reason
        else:
            kept.append(job)
    any_started = any(s.started for s in states)
    skills = _skill_ids(states, kept, any_started)
    located = [s for s in states if s.started and s.position is not None]
    locations = (
        (depot.lat, depot.lon),
        *((j.lat, j.lon) for j in kept),
        *(s.position for s in located if s.position),
    )
    start_of = {s.vehicle.id: 1 + len(kept) + i for i, s in enumerate(located)}
    problem = replace(skeleton, jobs=tuple(kept), locations=locations, skipped=skipped)
    pinned = {o: s.vehicle.id for s in states for o in s.loaded}
    solver_jobs = tuple(
        _solver_job(problem, i + 1, job, skills, pinned.get(job.order_id), any_started)
        for i, job in enumerate(kept)
    )
    index = problem.job_index()
    solver_vehicles = tuple(
        v
        for i, state in enumerate(states)
        if (v := _solver_vehicle(problem, i + 1, state, skills, start_of.get(state.vehicle.id, 0), index))
    )
    return replace(problem, input=SolverInput(solver_jobs, solver_vehicles))


def _skip(job: JobSpec, fleet: Fleet, promised: bool) -> tuple[str, str] | None:
    """Reasons known before solving: not the depot's, no vehicle, never ready in time, too late already.
    Checked cheaply first (a day has thousands of jobs); the reason itself comes from `unassigned_reason`."""
    windows = job.open_windows()
    passed = fleet.now is not None and not promised and all(end <= fleet.now for _, end in windows)
    if fleet.vehicles and windows and not passed and fleet.depot.serves(job.lat, job.lon):
        return None
    reason = unassigned_reason(job, fleet)
    if reason[0] in ("outside_service_area", "no_vehicle", "ready_too_late", "window_passed"):
        return reason
    return None


def _skill_ids(states: list[VehicleState], jobs: list[JobSpec], any_started: bool) -> dict[str, int]:
    names = {s for st in states for s in st.vehicle.skills} | {s for j in jobs for s in j.skills}
    names |= {"@" + st.vehicle.id for st in states if st.loaded}
    if any_started:
        names.add(FROM_DEPOT)
    return {name: i + 1 for i, name in enumerate(sorted(names))}


def _solver_job(
    problem: Problem, id_: int, job: JobSpec, skills: dict[str, int], pinned: str | None, any_started: bool
) -> SolverJob:
    names = set(job.skills)
    if pinned is not None:
        names.add("@" + pinned)
    elif any_started and job.kind == "delivery":
        names.add(FROM_DEPOT)  # still at the depot: only a vehicle that has not left can take it
    kept = problem.promised.get(job.order_id)
    windows = (kept,) if kept else job.open_windows()
    size = job.size()
    return SolverJob(
        id=id_,
        location=id_,
        service=job.service_s,
        delivery=size if job.kind == "delivery" else (0, 0, 0),
        pickup=size if job.kind != "delivery" else (0, 0, 0),
        windows=tuple((problem.secs(s), problem.secs(e)) for s, e in windows),
        skills=frozenset(skills[n] for n in names),
        priority=max(0, min(100, job.priority)),
    )


def _solver_vehicle(
    problem: Problem, id_: int, state: VehicleState, skills: dict[str, int], start: int, index: dict[str, int]
) -> SolverVehicle | None:
    v = state.vehicle
    tz = problem.depot.timezone
    shift_start = local_time(problem.day, v.shift_start, tz)
    if problem.now is not None:
        shift_start = max(shift_start, problem.now)
    window = (problem.secs(shift_start), problem.secs(local_time(problem.day, v.shift_end, tz)))
    if window[0] >= window[1]:
        return None
    names = set(v.skills) | ({"@" + v.id} if state.loaded else set())
    if (not state.started or state.at_depot) and FROM_DEPOT in skills:
        names.add(FROM_DEPOT)
    breaks = tuple(
        SolverBreak(k + 1, ((max(window[0], problem.secs(b_start)), problem.secs(b_end)),), b.duration_s)
        for k, b in enumerate(v.breaks)
        if (b_start := local_time(problem.day, b.start, tz)) is not None
        and (b_end := local_time(problem.day, b.end, tz)) > problem.at(window[0])
    )
    return SolverVehicle(
        id=id_,
        profile=v.profile,
        start=start,
        end=0,
        capacity=v.capacity(),
        window=window,
        skills=frozenset(skills[n] for n in names),
        breaks=breaks,
        fixed_cost=round(v.fixed_cost * 100),
        per_hour=round(v.cost_per_hour * 100),
        per_km=round(v.cost_per_km * 100),
        max_tasks=None if v.max_stops is None else max(0, v.max_stops - state.done),
        max_travel_time=v.max_driving_s,
        max_distance=None if v.max_distance_km is None else round(v.max_distance_km * 1000),
        initial=tuple(index[o] for o in state.route if o in index),
        reload_at=0 if v.reloads and (not state.started or state.at_depot) else None,
    )


# ---------------------------------------------------------------------------------------------------------
# Reading the answer


@dataclass(frozen=True)
class PlannedStop:
    order_id: str
    kind: str
    sequence: int
    lat: float
    lon: float
    arrival: datetime
    departure: datetime
    service_s: int
    promised: tuple[datetime, datetime]
    leg_distance_m: int
    leg_duration_s: int
    lateness_s: int = 0
    trip: int = 1


@dataclass(frozen=True)
class PlannedRoute:
    vehicle_id: str
    stops: tuple[PlannedStop, ...]
    start_at: datetime
    end_at: datetime
    distance_m: int
    duration_s: int  # driving
    start: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Plan:
    routes: tuple[PlannedRoute, ...]
    unassigned: dict[str, tuple[str, str]]  # order id → (reason, detail)


def read_solution(problem: Problem, solution: dict[str, Any], margin_s: int) -> Plan:
    """An engine's answer as routes of orders with arrival times, promised windows and lateness."""
    routes = [_route(problem, route, margin_s) for route in solution.get("routes", [])]
    unassigned = dict(problem.skipped)
    fleet = fleet_of(problem, solution)
    for item in solution.get("unassigned", []):
        job = problem.jobs[item["id"] - 1]
        unassigned[job.order_id] = unassigned_reason(job, fleet)
    return Plan(routes=tuple(r for r in routes if r.stops), unassigned=unassigned)


def _route(problem: Problem, route: dict[str, Any], margin_s: int) -> PlannedRoute:
    state = problem.states[route["vehicle"] - 1]
    stops: list[PlannedStop] = []
    prev_dist, prev_dur, trip = 0, 0, 1
    for step in route["steps"]:
        dist, dur = int(step.get("distance", 0)), int(step.get("duration", 0))
        if step["type"] == "reload":
            trip += 1
        if step["type"] == "job":
            job = problem.jobs[step["id"] - 1]
            arrival = problem.at(int(step["arrival"]) + int(step.get("waiting_time", 0)))
            start, end = problem.promised.get(job.order_id) or promise(arrival, job.open_windows(), margin_s)
            promised = (start.astimezone(UTC), end.astimezone(UTC))
            late = sum(
                int(v.get("duration", 0)) for v in step.get("violations", []) if v.get("cause") == "delay"
            )
            stops.append(
                PlannedStop(
                    order_id=job.order_id,
                    kind="pickup" if job.kind == "return" else "delivery",
                    sequence=len(stops) + 1,
                    lat=job.lat,
                    lon=job.lon,
                    arrival=arrival,
                    departure=arrival + timedelta(seconds=job.service_s),
                    service_s=job.service_s,
                    promised=promised,
                    leg_distance_m=dist - prev_dist,
                    leg_duration_s=dur - prev_dur,
                    lateness_s=max(late, int((arrival - promised[1]).total_seconds())),
                    trip=trip,
                )
            )
        if step["type"] in ("job", "start", "reload"):
            prev_dist, prev_dur = dist, dur
    steps = route["steps"]
    return PlannedRoute(
        vehicle_id=state.vehicle.id,
        stops=tuple(stops),
        start_at=problem.at(int(steps[0]["arrival"])),
        end_at=problem.at(int(steps[-1]["arrival"])),
        distance_m=int(route.get("distance", steps[-1].get("distance", 0))),
        duration_s=int(route.get("duration", steps[-1].get("duration", 0))),
        start=problem.locations[int(steps[0].get("location_index", 0))],
    )


def fleet_of(problem: Problem, solution: dict[str, Any]) -> Fleet:
    """The day's fleet with what the solution used of it, for `unassigned_reason`."""
    travel_s: dict[str, float] = {}
    travel_m: dict[str, float] = {}
    for i, job in enumerate(problem.jobs):
        for matrix in problem.input.matrices.values():
            s, m = float(matrix.durations[0, i + 1]), float(matrix.distances[0, i + 1])
            travel_s[job.order_id] = min(travel_s.get(job.order_id, s), s)
            travel_m[job.order_id] = min(travel_m.get(job.order_id, m), m)
    load: dict[str, tuple[int, ...]] = {}
    stops: dict[str, int] = {}
    for route in solution.get("routes", []):
        state = problem.states[route["vehicle"] - 1]
        jobs = [problem.input.jobs[s["id"] - 1] for s in route["steps"] if s["type"] == "job"]
        delivered = [sum(d) for d in zip(*(j.delivery for j in jobs), strict=True)] or [0, 0, 0]
        picked = [sum(p) for p in zip(*(j.pickup for j in jobs), strict=True)] or [0, 0, 0]
        load[state.vehicle.id] = tuple(max(a, b) for a, b in zip(delivered, picked, strict=True))
        stops[state.vehicle.id] = len(jobs) + state.done
    return Fleet(
        depot=problem.depot,
        day=problem.day,
        vehicles=tuple(s.vehicle for s in problem.states),
        now=problem.now,
        travel_s=travel_s,
        travel_m=travel_m,
        load=load,
        stops=stops,
    )


# ---------------------------------------------------------------------------------------------------------
# Promises kept, churn kept small


def broken_promises(problem: Problem, solution: dict[str, Any]) -> list[str]:
    """Promised orders the engine could not fit inside their promised window."""
    return [
        problem.jobs[u["id"] - 1].order_id
        for u in solution.get("unassigned", [])
        if problem.jobs[u["id"] - 1].order_id in problem.promised
    ]


def with_late_stops(problem: Problem, solution: dict[str, Any], late: list[str]) -> SolverInput | None:
    """The solution's routes with each broken promise put back on its vehicle where it is least late (with the
    lateness it causes the other stops counted), to be checked in VROOM's plan mode (which reports the lateness
    instead of refusing the route). Putting it back where it was kept a vehicle running late waiting for a
    later window while the stops it was already late for queued behind (2 hours late instead of 20 minutes)."""
    index = problem.job_index()
    vehicles = {v.id: v for v in problem.input.vehicles}
    jobs = {j.id: j for j in problem.input.jobs}
    routes = {
        r["vehicle"]: [s["id"] for s in r["steps"] if s["type"] == "job"] for r in solution.get("routes", [])
    }
    touched = set()
    for order_id in sorted(late, key=lambda o: (problem.promised[o][1], o)):  # the most overdue first
        owner = next((k + 1 for k, s in enumerate(problem.states) if order_id in s.route), None)
        if owner is None or owner not in vehicles:
            continue
        route = routes.setdefault(owner, [])
        old = [index[o] for o in problem.states[owner - 1].route if o in index]
        before = (
            [j for j in old[: old.index(index[order_id])] if j in route] if index[order_id] in old else []
        )
        where = max((route.index(j) + 1 for j in before), default=0)
        position = _least_late(problem.input, jobs, vehicles[owner], route, index[order_id], where)
        route.insert(position, index[order_id])
        touched.add(owner)
    if not touched:
        return None
    kept = tuple(replace(v, initial=tuple(routes[v.id])) for v in problem.input.vehicles if v.id in touched)
    return replace(problem.input, vehicles=kept)


def _least_late(
    inp: SolverInput,
    jobs: dict[int, SolverJob],
    vehicle: SolverVehicle,
    route: list[int],
    job: int,
    where: int,
) -> int:
    """The position with the least lateness over the route, then the least cost; `where` (the old position)
    wins ties, so that a stop moves only for a gain. The same arithmetic as `timeline`, without building its
    steps: each position continues from the route's state before it (a re-plan of 900 stops with a few dozen
    broken promises took seconds of the GIL with a timeline per position)."""
    matrix = inp.matrices[vehicle.profile]
    durations, distances = matrix.durations, matrix.distances

    def serve(state: tuple[int, int, int, int], job_id: int) -> tuple[int, int, int, int]:
        t, dist, here, late = state
        spec = jobs[job_id]
        t += int(durations[here, spec.location])
        dist += int(distances[here, spec.location])
        window = next((w for w in spec.windows if t <= w[1]), spec.windows[-1])
        return max(t, window[0]) + spec.service, dist, spec.location, late + max(0, t - window[1])

    start = vehicle.window[0]
    prefix = [(start, 0, vehicle.start, 0)]
    for job_id in route:
        prefix.append(serve(prefix[-1], job_id))

    def lateness(position: int) -> tuple[int, float, bool]:
        state = serve(prefix[position], job)
        for job_id in route[position:]:
            state = serve(state, job_id)
        t, dist, here, late = state
        if vehicle.end is not None:
            t, dist = t + int(durations[here, vehicle.end]), dist + int(distances[here, vehicle.end])
        return late, route_cost(vehicle, t - start, dist), position != where

    return min(range(len(route) + 1), key=lateness)


def merge_checked(solution: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
    replaced = {r["vehicle"]: r for r in checked.get("routes", [])}
    on_checked = {s["id"] for r in replaced.values() for s in r["steps"] if s["type"] == "job"}
    routes = [replaced.pop(r["vehicle"], r) for r in solution.get("routes", [])] + list(replaced.values())
    unassigned = [u for u in solution.get("unassigned", []) if u["id"] not in on_checked]
    return {**solution, "routes": routes, "unassigned": unassigned}


def keep_sequences(problem: Problem, solution: dict[str, Any], min_saving: float) -> dict[str, Any]:
    """A vehicle keeps its current order of stops when the engine's re-sequence of the same stops saves less
    than `min_saving` (a fraction of the route's cost) and the current order is on time."""
    index = problem.job_index()
    vehicles = {v.id: v for v in problem.input.vehicles}
    routes = []
    for route in solution.get("routes", []):
        vehicle = vehicles[route["vehicle"]]
        new = [s["id"] for s in route["steps"] if s["type"] == "job"]
        old = [index[o] for o in problem.states[vehicle.id - 1].route if o in index]
        if (
            new == old
            or sorted(new) != sorted(old)
            or vehicle.breaks
            or any(s["type"] == "reload" for s in route["steps"])
        ):
            routes.append(route)
            continue
        steps = timeline(problem.input, vehicle, old, set())
        late = any(s["violations"] for s in steps)
        new_cost = route_cost(vehicle, _span(route["steps"]), int(route.get("distance", 0)))
        old_cost = route_cost(vehicle, _span(steps), steps[-1]["distance"])
        keep = not late and old_cost <= new_cost * (1 + min_saving)
        routes.append(route_from_steps(vehicle, steps) if keep else route)
    return {**solution, "routes": routes}


def _span(steps: list[dict[str, Any]]) -> int:
    return int(steps[-1]["arrival"]) - int(steps[0]["arrival"])
