"""Planning rules on plain data: fleet and jobs, promises, reasons for orders left out, churn and KPIs.

No I/O and no engine import; `planning.py` turns these into the engines' problem and reads their answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common import events as ev

# ---------------------------------------------------------------------------------------------------------
# Fleet


@dataclass(frozen=True)
class Wave:
    """At `cutoff` (depot-local), plan the day `day_offset` days later with every order received by then."""

    cutoff: str
    day_offset: int = 1


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
    service_area: tuple[tuple[float, float], ...] = ()  # polygon of (lat, lon); empty: the radius alone
    waves: tuple[Wave, ...] = ()  # none: plan continuously as orders arrive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DepotSpec:
        values = dict(data)
        values["service_area"] = tuple(tuple(p) for p in values.get("service_area", ()))
        values["waves"] = tuple(Wave(**w) for w in values.get("waves", ()))
        return cls(**values)

    def serves(self, lat: float, lon: float) -> bool:
        if self.service_area:
            return point_in_polygon((lat, lon), self.service_area)
        return great_circle_m((self.lat, self.lon), (lat, lon)) <= self.service_radius_km * 1000


@dataclass(frozen=True)
class BreakSpec:
    start: str  # the break starts between start and end (depot-local)
    end: str
    duration_s: int = 1800


@dataclass(frozen=True)
class VehicleSpec:
    id: str
    depot_id: str
    profile: str = "van"
    capacity_parcels: int = 120
    capacity_kg: float = 800.0
    capacity_volume_l: float = 6000.0
    skills: tuple[str, ...] = ()
    shift_start: str = "08:00"
    shift_end: str = "18:00"
    breaks: tuple[BreakSpec, ...] = ()
    fixed_cost: float = 0.0  # currency units per day used
    cost_per_hour: float = 25.0
    cost_per_km: float = 0.30
    max_stops: int | None = None
    max_driving_s: int | None = None
    max_distance_km: float | None = None
    reloads: bool = True  # may come back to the depot to reload (several trips)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["skills"] = list(self.skills)
        return values

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VehicleSpec:
        values = dict(data)
        values["skills"] = tuple(values.get("skills", ()))
        values["breaks"] = tuple(BreakSpec(**b) for b in values.get("breaks", ()))
        return cls(**values)

    def capacity(self) -> tuple[int, int, int]:
        """Parcels, grams, millilitres: the engines' integer dimensions."""
        return (self.capacity_parcels, round(self.capacity_kg * 1000), round(self.capacity_volume_l * 1000))


# ---------------------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class JobSpec:
    order_id: str
    kind: str  # delivery | return (a pickup)
    lat: float
    lon: float
    windows: tuple[tuple[datetime, datetime], ...]
    service_s: int
    parcels: int
    weight_kg: float
    volume_l: float = 0.0
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
            windows=tuple(sorted((w.start, w.end) for w in order.time_windows)),
            service_s=order.service_time_s,
            parcels=sum(p.count for p in order.parcels) or 1,
            weight_kg=sum(p.weight_kg * p.count for p in order.parcels),
            volume_l=sum(p.volume_l * p.count for p in order.parcels),
            skills=tuple(order.skills),
            priority=order.priority,
            ready_at=order.ready_at,
        )

    def size(self) -> tuple[int, int, int]:
        return (self.parcels, round(self.weight_kg * 1000), round(self.volume_l * 1000))

    def open_windows(self) -> tuple[tuple[datetime, datetime], ...]:
        """The requested windows, each starting no earlier than the parcel is ready."""
        ready = self.ready_at
        shifted = ((max(s, ready) if ready else s, e) for s, e in self.windows)
        return tuple((s, e) for s, e in shifted if e > s)


def service_date(job: JobSpec, timezone: str) -> date:
    """The depot-local day the job is due: the day its first window starts."""
    return min(w[0] for w in job.windows).astimezone(ZoneInfo(timezone)).date()


def local_time(day: date, hhmm: str, timezone: str) -> datetime:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), ZoneInfo(timezone))


def due_waves(depot: DepotSpec, now: datetime) -> list[tuple[Wave, date, datetime]]:
    """Each wave whose latest cutoff at or before `now` (today's or yesterday's) plans today or later, with
    the day it plans and that cutoff."""
    today = now.astimezone(ZoneInfo(depot.timezone)).date()
    due = []
    for wave in depot.waves:
        for day in (today, today - timedelta(days=1)):
            cutoff = local_time(day, wave.cutoff, depot.timezone)
            if cutoff <= now:
                if day + timedelta(days=wave.day_offset) >= today:
                    due.append((wave, day + timedelta(days=wave.day_offset), cutoff))
                break
    return due


# ---------------------------------------------------------------------------------------------------------
# Promises


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


# ---------------------------------------------------------------------------------------------------------
# Why an order was left out (VROOM does not say): each constraint checked in turn


@dataclass(frozen=True)
class Fleet:
    """What `unassigned_reason` needs to know of the day: vehicles, their shifts and what the plan used."""

    depot: DepotSpec
    day: date
    vehicles: tuple[VehicleSpec, ...]
    now: datetime | None = None
    travel_s: dict[str, float] = field(
        default_factory=dict
    )  # order id → depot-to-stop time (fastest profile)
    travel_m: dict[str, float] = field(default_factory=dict)  # order id → depot-to-stop distance
    load: dict[str, tuple[int, ...]] = field(default_factory=dict)  # vehicle id → the most it carries at once
    stops: dict[str, int] = field(default_factory=dict)  # vehicle id → stops on its route


def unassigned_reason(job: JobSpec, fleet: Fleet) -> tuple[str, str]:
    """The first rule that explains why no vehicle serves `job`; reasons are stable names for ops."""
    if not fleet.depot.serves(job.lat, job.lon):
        return "outside_service_area", "the address is outside the depot's service area"
    if not fleet.vehicles:
        return "no_vehicle", "no vehicle is available at this depot on that day"
    windows = job.open_windows()
    if not windows:
        return "ready_too_late", "the parcel is ready only after its last delivery window closes"
    if fleet.now is not None and all(end <= fleet.now for _, end in windows):
        return "window_passed", "every requested window has already closed"
    skilled = [v for v in fleet.vehicles if set(job.skills) <= set(v.skills)]
    if not skilled:
        return "no_vehicle_with_skills", f"no vehicle has the skills {sorted(job.skills)}"
    fits = [v for v in skilled if all(a <= c for a, c in zip(job.size(), v.capacity(), strict=True))]
    if not fits:
        return (
            "too_large",
            f"{job.parcels} parcels / {job.weight_kg:.1f} kg / {job.volume_l:.0f} l fit no vehicle",
        )
    in_shift = [v for v in fits if any(_overlaps(w, _shift(v, fleet)) for w in windows)]
    if not in_shift:
        return "outside_shifts", "every requested window falls outside every vehicle's shift"
    travel = fleet.travel_s.get(job.order_id, 0.0)
    reachable = [v for v in in_shift if _reachable(v, windows, travel, job.service_s, fleet)]
    if not reachable:
        return (
            "window_unreachable",
            "no vehicle can reach the address within a window and return in its shift",
        )
    within = [v for v in reachable if _within_limits(v, job.order_id, fleet)]
    if not within:
        return "beyond_vehicle_limits", "the round trip exceeds every vehicle's distance or driving limit"
    if all(v.max_stops is not None and fleet.stops.get(v.id, 0) >= v.max_stops for v in within):
        return "stop_limit_reached", "every vehicle that could serve it has its maximum number of stops"
    room = [v for v in within if _has_room(v, job, fleet)]
    if not room:
        return "capacity_exhausted", "the vehicles that could serve it are full"
    return "fleet_time_exhausted", "the shifts of the vehicles that could serve it are fully used"


def _shift(vehicle: VehicleSpec, fleet: Fleet) -> tuple[datetime, datetime]:
    tz = fleet.depot.timezone
    start = local_time(fleet.day, vehicle.shift_start, tz)
    if fleet.now is not None:
        start = max(start, fleet.now)
    return start, local_time(fleet.day, vehicle.shift_end, tz)


def _overlaps(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _reachable(
    vehicle: VehicleSpec,
    windows: tuple[tuple[datetime, datetime], ...],
    travel: float,
    service: int,
    fleet: Fleet,
) -> bool:
    start, end = _shift(vehicle, fleet)
    leg = timedelta(seconds=travel)
    for w_start, w_end in windows:
        arrival = max(start + leg, w_start)
        if arrival <= w_end and arrival + timedelta(seconds=service) + leg <= end:
            return True
    return False


def _within_limits(vehicle: VehicleSpec, order_id: str, fleet: Fleet) -> bool:
    metres = 2 * fleet.travel_m.get(order_id, 0.0)
    seconds = 2 * fleet.travel_s.get(order_id, 0.0)
    if vehicle.max_distance_km is not None and metres > vehicle.max_distance_km * 1000:
        return False
    return vehicle.max_driving_s is None or seconds <= vehicle.max_driving_s


def _has_room(vehicle: VehicleSpec, job: JobSpec, fleet: Fleet) -> bool:
    used = fleet.load.get(vehicle.id, (0, 0, 0))
    return vehicle.reloads or all(
        u + a <= c for u, a, c in zip(used, job.size(), vehicle.capacity(), strict=True)
    )


# ---------------------------------------------------------------------------------------------------------
# Churn and KPIs


def stops_moved(before: dict[str, list[str]], after: dict[str, list[str]]) -> set[str]:
    """Orders on a route before and after whose vehicle changed, or whose predecessor among the stops on both
    routes changed (a stop inserted before it does not move it; a re-sequence does)."""
    where_before = {o: v for v, orders in before.items() for o in orders}
    where_after = {o: v for v, orders in after.items() for o in orders}
    moved = {o for o in where_before.keys() & where_after.keys() if where_before[o] != where_after[o]}
    for vehicle, orders in after.items():
        kept = [o for o in orders if where_before.get(o) == vehicle]
        old = [o for o in before.get(vehicle, []) if where_after.get(o) == vehicle]
        old_prev = {o: (old[i - 1] if i else None) for i, o in enumerate(old)}
        moved |= {o for i, o in enumerate(kept) if old_prev.get(o) != (kept[i - 1] if i else None)}
    return moved


@dataclass(frozen=True)
class Kpis:
    cost: float
    distance_km: float
    driving_h: float
    route_h: float
    stops: int
    stops_per_hour: float
    vehicles: int
    unassigned: int
    unassigned_by_reason: dict[str, int]
    late_stops: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kpis(
    routes: list[tuple[VehicleSpec, int, int, int, int, int]], unassigned: dict[str, tuple[str, str]]
) -> Kpis:
    """Per route: (vehicle, distance m, driving s, route s, stops, late stops)."""
    cost = sum(
        v.fixed_cost + v.cost_per_hour * route_s / 3600 + v.cost_per_km * dist / 1000
        for v, dist, _, route_s, stops, _ in routes
        if stops
    )
    route_h = sum(r[3] for r in routes) / 3600
    stops = sum(r[4] for r in routes)
    by_reason: dict[str, int] = {}
    for reason, _ in unassigned.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return Kpis(
        cost=round(cost, 2),
        distance_km=round(sum(r[1] for r in routes) / 1000, 3),
        driving_h=round(sum(r[2] for r in routes) / 3600, 3),
        route_h=round(route_h, 3),
        stops=stops,
        stops_per_hour=round(stops / route_h, 2) if route_h else 0.0,
        vehicles=sum(1 for r in routes if r[4]),
        unassigned=len(unassigned),
        unassigned_by_reason=by_reason,
        late_stops=sum(r[5] for r in routes),
    )


# ---------------------------------------------------------------------------------------------------------
# Geometry


def great_circle_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(min(1.0, h)))


def point_in_polygon(point: tuple[float, float], polygon: tuple[tuple[float, float], ...]) -> bool:
    """Ray casting on (lat, lon) pairs; fine for a city-sized area away from the poles and the antimeridian."""
    y, x = point
    inside = False
    for i in range(len(polygon)):
        (y1, x1), (y2, x2) = polygon[i], polygon[i - 1]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside
