"""Planning rules: the VROOM problem built from jobs and vehicles, the plan read back, promises, and reasons
for orders left out. Plain data in and out; no I/O, no solver import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common import events as ev

# ---------------------------------------------------------------------------------------------------------
# Fleet and jobs


@dataclass(frozen=True)
class DepotSpec:
    id: str
    name: str
    lat: float
    lon: float
    timezone: str
    service_radius_km: float = 15.0
    opens: str = "07:00"
    closes: str = "21:00"


@dataclass(frozen=True)
class VehicleSpec:
    id: str
    depot_id: str
    profile: str = "van"
    capacity_parcels: int = 120
    capacity_kg: float = 800.0
    skills: tuple[str, ...] = ()
    shift_start: str = "08:00"
    shift_end: str = "18:00"


@dataclass(frozen=True)
class JobSpec:
    order_id: str
    kind: str
    lat: float
    lon: float
    windows: tuple[tuple[datetime, datetime], ...]
    service_s: int
    parcels: int
    weight_kg: float
    skills: tuple[str, ...] = ()
    priority: int = 0
    ready_at: datetime | None = None

    @classmethod
    def from_order(cls, order: ev.OrderSnapshot) -> JobSpec:
        return cls(
            order_id=order.order_id,
            kind=order.kind,
            lat=order.destination.lat,
            lon=order.destination.lon,
            windows=tuple((w.start, w.end) for w in order.time_windows),
            service_s=order.service_time_s,
            parcels=sum(p.count for p in order.parcels) or 1,
            weight_kg=sum(p.weight_kg * p.count for p in order.parcels),
            skills=tuple(order.skills),
            priority=order.priority,
            ready_at=order.ready_at,
        )


def service_date(job: JobSpec, timezone: str) -> date:
    """The depot-local day the job is due: the day its first window starts."""
    return min(w[0] for w in job.windows).astimezone(ZoneInfo(timezone)).date()


# ---------------------------------------------------------------------------------------------------------
# The problem, solver-neutral: times are seconds from the service day's local midnight.


@dataclass(frozen=True)
class SolverJob:
    id: int
    location: int
    service: int
    delivery: tuple[int, int]
    pickup: tuple[int, int]
    skills: frozenset[int]
    priority: int
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SolverVehicle:
    id: int
    profile: str
    start: int
    end: int
    capacity: tuple[int, int]
    skills: frozenset[int]
    window: tuple[int, int]


@dataclass(frozen=True)
class Problem:
    origin: datetime
    depot: DepotSpec
    vehicles: tuple[VehicleSpec, ...]
    jobs: tuple[JobSpec, ...]
    locations: tuple[tuple[float, float], ...]  # (lat, lon); 0 is the depot
    solver_jobs: tuple[SolverJob, ...]
    solver_vehicles: tuple[SolverVehicle, ...]
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # order id → (reason, detail)

    def at(self, seconds: int) -> datetime:
        return self.origin + timedelta(seconds=seconds)


def local_time(day: date, hhmm: str, timezone: str) -> datetime:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), ZoneInfo(timezone))


def build_problem(depot: DepotSpec, vehicles: list[VehicleSpec], jobs: list[JobSpec], day: date) -> Problem:
    origin = local_time(day, "00:00", depot.timezone)
    skills = _skill_ids(vehicles, jobs)
    horizon = 2 * 86400

    def secs(t: datetime) -> int:
        return max(0, min(horizon, int((t - origin).total_seconds())))

    solver_vehicles = tuple(
        SolverVehicle(
            id=i + 1,
            profile=v.profile,
            start=0,
            end=0,
            capacity=(v.capacity_parcels, round(v.capacity_kg * 1000)),
            skills=frozenset(skills[s] for s in v.skills),
            window=(
                secs(local_time(day, v.shift_start, depot.timezone)),
                secs(local_time(day, v.shift_end, depot.timezone)),
            ),
        )
        for i, v in enumerate(vehicles)
    )
    solver_jobs = []
    for i, job in enumerate(jobs):
        windows = []
        for start, end in job.windows:
            if job.ready_at is not None:
                start = max(start, job.ready_at)
            if end > start:
                windows.append((secs(start), secs(end)))
        amount = (job.parcels, round(job.weight_kg * 1000))
        solver_jobs.append(
            SolverJob(
                id=i + 1,
                location=i + 1,
                service=job.service_s,
                delivery=amount if job.kind == "delivery" else (0, 0),
                pickup=amount if job.kind == "return" else (0, 0),
                skills=frozenset(skills[s] for s in job.skills),
                priority=job.priority,
                windows=tuple(w for w in windows if w[1] > w[0]) or ((0, 1),),
            )
        )
    return Problem(
        origin=origin,
        depot=depot,
        vehicles=tuple(vehicles),
        jobs=tuple(jobs),
        locations=((depot.lat, depot.lon), *((j.lat, j.lon) for j in jobs)),
        solver_jobs=tuple(solver_jobs),
        solver_vehicles=solver_vehicles,
    )


def _skill_ids(vehicles: list[VehicleSpec], jobs: list[JobSpec]) -> dict[str, int]:
    names = sorted({s for v in vehicles for s in v.skills} | {s for j in jobs for s in j.skills})
    return {name: i + 1 for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------------------
# The plan


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


@dataclass(frozen=True)
class PlannedRoute:
    vehicle_id: str
    stops: tuple[PlannedStop, ...]
    start_at: datetime
    end_at: datetime
    distance_m: int
    duration_s: int


@dataclass(frozen=True)
class Plan:
    routes: tuple[PlannedRoute, ...]
    unassigned: dict[str, tuple[str, str]]  # order id → (reason, detail)


def read_solution(problem: Problem, solution: dict[str, Any], margin_s: int) -> Plan:
    """VROOM's answer as routes of orders with arrival times and promised windows."""
    routes = []
    for route in solution.get("routes", []):
        vehicle = problem.vehicles[route["vehicle"] - 1]
        stops: list[PlannedStop] = []
        prev_dist, prev_dur = 0, 0
        for step in route["steps"]:
            dist, dur = int(step.get("distance", 0)), int(step.get("duration", 0))
            if step["type"] in ("job", "pickup", "delivery"):
                job = problem.jobs[step["id"] - 1]
                arrival = problem.at(int(step["arrival"]) + int(step.get("waiting_time", 0)))
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
                        promised=promise(arrival, job.windows, margin_s),
                        leg_distance_m=dist - prev_dist,
                        leg_duration_s=dur - prev_dur,
                    )
                )
            prev_dist, prev_dur = dist, dur
        steps = route["steps"]
        routes.append(
            PlannedRoute(
                vehicle_id=vehicle.id,
                stops=tuple(stops),
                start_at=problem.at(int(steps[0]["arrival"])),
                end_at=problem.at(int(steps[-1]["arrival"])),
                distance_m=int(route.get("distance", 0)),
                duration_s=int(route.get("duration", 0)),
            )
        )
    unassigned = dict(problem.skipped)
    for item in solution.get("unassigned", []):
        job = problem.jobs[item["id"] - 1]
        unassigned[job.order_id] = unassigned_reason(job, problem)
    return Plan(routes=tuple(routes), unassigned=unassigned)


def promise(
    arrival: datetime, windows: tuple[tuple[datetime, datetime], ...], margin_s: int
) -> tuple[datetime, datetime]:
    """Planned arrival ± margin, kept inside the requested window that holds the arrival."""
    margin = timedelta(seconds=margin_s)
    window = next(
        (w for w in windows if w[0] <= arrival <= w[1]), min(windows, key=lambda w: abs(w[0] - arrival))
    )
    start = max(window[0], arrival - margin)
    end = min(window[1], arrival + margin)
    return (start, end) if end > start else window


def unassigned_reason(job: JobSpec, problem: Problem) -> tuple[str, str]:
    """Why VROOM left a job out, found by checking each constraint in turn (VROOM itself does not say)."""
    vehicles = problem.vehicles
    if not vehicles:
        return "no_vehicle", "no vehicle is available at this depot on that day"
    skilled = [v for v in vehicles if set(job.skills) <= set(v.skills)]
    if not skilled:
        return "no_vehicle_with_skills", f"no vehicle has the skills {sorted(job.skills)}"
    fits = [v for v in skilled if job.parcels <= v.capacity_parcels and job.weight_kg <= v.capacity_kg]
    if not fits:
        return "too_large", f"{job.parcels} parcels / {job.weight_kg:.1f} kg exceed every vehicle's capacity"
    day = problem.origin.date()
    tz = problem.depot.timezone
    in_shift = [
        v
        for v in fits
        if any(
            s < local_time(day, v.shift_end, tz) and e > local_time(day, v.shift_start, tz)
            for s, e in job.windows
        )
    ]
    if not in_shift:
        return "outside_shifts", "every requested window falls outside every vehicle's shift"
    return "capacity_or_time_exhausted", "the fleet's capacity and time that day are used by other orders"
