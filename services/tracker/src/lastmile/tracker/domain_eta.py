"""The ETA engine: a vehicle's progress along its route, arrivals and departures, and the arrival time of every
remaining stop, from its positions. Pure: the handlers load and save `Progress` and publish what a `Step` holds.

A stop's ETA chains from where the vehicle is: the rest of the current leg (the planned leg's duration in
proportion to the distance left, or a straight-line estimate off the plan), then each remaining planned leg and
service time, never before the time the plan waited for (a customer's window). Driving times are scaled by the
vehicle's pace, the ratio of its actual to its planned leg times, learnt as it goes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lastmile.common import events as ev
from lastmile.tracker.domain import Fix, accuracy_weight, distance_m

DEFAULT_SPEED_MPS = 25 / 3.6
DEFAULT_CIRCUITY = 1.3


@dataclass(frozen=True)
class EtaConfig:
    arrival_radius_m: float = 50.0
    departure_radius_m: float = 100.0
    dwell_s: float = 30.0
    change_threshold_s: float = 120.0
    # ... or this share of the time left until the ETA, if more: an arrival five hours off that moves by three
    # minutes is no news to anyone, and every change is an event three services handle
    change_fraction: float = 0.1
    arriving_soon_s: float = 600.0
    delay_threshold_s: float = 900.0
    # delays are told for stops due within this long: soon enough for the planner to act and the customer to
    # plan, and a late van's stops for the evening do not each report every quarter hour they slip
    delay_horizon_s: float = 7200.0
    good_accuracy_m: float = 25.0
    pace_alpha: float = 0.3
    pace_min: float = 0.5
    pace_max: float = 3.0
    sample_every_s: int = 300
    horizons_s: tuple[int, ...] = (600, 1800, 3600)


# ---------------------------------------------------------------------------------------------------------
# The plan, as routes.v1 last said


def _not_before(stop: ev.RouteStop, waited: bool) -> datetime | None:
    """Drivers do not ring before the window the customer was promised (an early van waits around the corner),
    nor before the time the plan waited for; an ETA earlier than that is one the customer never sees met."""
    times = [stop.planned_arrival] if waited else []
    if stop.promised_window is not None:
        times.append(stop.promised_window.start)
    return max(times, default=None)


@dataclass(frozen=True)
class PlannedStop:
    order_id: str
    sequence: int
    lat: float
    lon: float
    planned_arrival: datetime
    service_s: int
    leg_duration_s: int
    not_before: datetime | None  # the promised window's start, or the time the plan waited for
    promised_end: datetime | None = None  # the end of the window the customer was promised


@dataclass(frozen=True)
class Plan:
    route_id: str
    version: int
    vehicle_id: str
    start_lat: float
    start_lon: float
    start_at: datetime
    stops: tuple[PlannedStop, ...]
    speed_mps: float = DEFAULT_SPEED_MPS  # planned driving speed, from the plan's own legs
    circuity: float = DEFAULT_CIRCUITY  # road distance over straight-line distance, from the plan's legs

    @classmethod
    def from_snapshot(cls, route: ev.RouteSnapshot) -> Plan:
        stops, dist, dur, straight = [], 0, 0, 0.0
        prev = (route.start.lat, route.start.lon, route.start_at)
        for s in sorted(route.stops, key=lambda s: s.sequence):
            reached = prev[2] + timedelta(seconds=s.leg_duration_s)
            waited = (s.planned_arrival - reached).total_seconds() > 60
            stops.append(
                PlannedStop(
                    s.order_id,
                    s.sequence,
                    s.location.lat,
                    s.location.lon,
                    s.planned_arrival,
                    s.service_s,
                    s.leg_duration_s,
                    _not_before(s, waited),
                    s.promised_window.end if s.promised_window is not None else None,
                )
            )
            if s.leg_distance_m > 0 and s.leg_duration_s > 0:
                dist, dur = dist + s.leg_distance_m, dur + s.leg_duration_s
                straight += distance_m(prev[0], prev[1], s.location.lat, s.location.lon)
            prev = (s.location.lat, s.location.lon, s.planned_departure)
        return cls(
            route.route_id,
            route.version,
            route.vehicle_id,
            route.start.lat,
            route.start.lon,
            route.start_at,
            tuple(stops),
            dist / dur if dur > 0 else DEFAULT_SPEED_MPS,
            min(3.0, max(1.0, dist / straight)) if straight > 100 else DEFAULT_CIRCUITY,
        )

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {s.order_id: i for i, s in enumerate(self.stops)}

    def stop(self, order_id: str | None) -> PlannedStop | None:
        index = self._index.get(order_id) if order_id else None
        return None if index is None else self.stops[index]

    def after(self, order_id: str | None) -> PlannedStop | None:
        """The stop the plan drives to from this one (None: from the depot)."""
        index = -1 if order_id is None else self._index.get(order_id)
        if index is None or index + 1 >= len(self.stops):
            return None
        return self.stops[index + 1]


# ---------------------------------------------------------------------------------------------------------
# Progress: the engine's state for one vehicle on one route (stored as JSON between positions)


@dataclass
class StopState:
    status: str = "open"  # open | arrived | done
    out: bool = False  # out for delivery announced
    arrived_at: datetime | None = None
    eta: datetime | None = None  # latest computed
    published: datetime | None = None  # latest told (OutForDelivery, EtaChanged)
    soon: bool = False
    delay_level: int = 0
    before: int | None = None  # stops to reach before this one, as of the latest estimate
    passed: bool = False  # the vehicle came within its radius and went on without stopping
    samples: list[list[int]] = field(default_factory=list)  # [when, eta, planned], epoch seconds


@dataclass
class Origin:
    """Where the current leg began: a stop (or the depot, order_id None), last seen there at `at`."""

    order_id: str | None
    lat: float
    lon: float
    at: datetime


@dataclass
class Progress:
    route_id: str
    version: int
    origin: Origin
    stops: dict[str, StopState]
    started: bool = False
    pace: float = 1.0
    fix: Fix | None = None
    dwell: tuple[str, datetime] | None = None  # inside a stop's radius since
    sample_slot: int = 0

    @classmethod
    def begin(cls, plan: Plan) -> Progress:
        origin = Origin(None, plan.start_lat, plan.start_lon, plan.start_at)
        return cls(plan.route_id, plan.version, origin, {s.order_id: StopState() for s in plan.stops})

    def open_stops(self, plan: Plan) -> list[PlannedStop]:
        return [s for s in plan.stops if self.stops[s.order_id].status != "done"]


@dataclass(frozen=True)
class EtaError:
    horizon_s: int
    source: str  # live | planned
    error_s: float


@dataclass
class Step:
    progress: Progress
    events: list[ev.Payload] = field(default_factory=list)
    errors: list[EtaError] = field(default_factory=list)
    etas: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # order → (eta, stops before)


# ---------------------------------------------------------------------------------------------------------
# Entry points


def start(plan: Plan, progress: Progress, now: datetime, cfg: EtaConfig) -> Step:
    """The route starts: every open stop is out for delivery, with its ETA."""
    progress.started = True
    step = Step(progress)
    basis = progress.fix.at if progress.fix else now
    _recompute(plan, step, max(basis, now), now, cfg)
    return step


def observe(plan: Plan, progress: Progress, fix: Fix, now: datetime, cfg: EtaConfig) -> Step:
    """A new position (callers pass only plausible ones); one not newer than the last changes nothing. The
    first position starts the route."""
    step = Step(progress)
    if progress.fix is not None and fix.at <= progress.fix.at:
        return step
    progress.started = True
    weight = accuracy_weight(fix.accuracy_m, cfg.good_accuracy_m)
    if progress.fix is not None and weight < 1:  # a vague fix moves our belief only part of the way
        last = progress.fix
        lat, lon = last.lat + weight * (fix.lat - last.lat), last.lon + weight * (fix.lon - last.lon)
        fix = Fix(lat, lon, fix.at, fix.accuracy_m)
    progress.fix = fix
    _follow(plan, step, fix, weight, cfg)
    _recompute(plan, step, fix.at, max(now, fix.at), cfg)
    _sample(plan, step, fix.at, cfg)
    return step


def complete(
    plan: Plan, progress: Progress, order_id: str, at: datetime, now: datetime, cfg: EtaConfig
) -> Step:
    """The driver completed a stop (delivered or failed); the others' ETAs follow. A stop completed where the
    vehicle is (or the next one) is where the next leg begins; one completed from afar is just struck off."""
    step = Step(progress)
    state = progress.stops.get(order_id)
    stop = plan.stop(order_id)
    if state is None or stop is None or state.status == "done":
        return step
    chain = _chain(plan, progress)
    there = state.status in ("arrived", "visited") or _near(progress.fix, stop, cfg)
    if there or (chain and chain[0].order_id == order_id):
        progress.origin = Origin(order_id, stop.lat, stop.lon, max(at, progress.origin.at))
    state.status = "done"
    if progress.dwell and progress.dwell[0] == order_id:
        progress.dwell = None
    if progress.started:
        _recompute(plan, step, max(at, progress.fix.at if progress.fix else at), now, cfg)
    return step


def revise(plan: Plan, progress: Progress, now: datetime, cfg: EtaConfig) -> Step:
    """A new version of the route: stops kept keep their state, new ones start afresh, delays are measured
    against the new plan.

    The delays the new plan starts with are not announced: the planner made it knowing where the vehicle was,
    and told of them again it re-planned the same route, without end (in the make-demo day, 13,000 delay events
    in two real minutes, each batch a re-plan and a new version). A delay that grows by another step from
    here is news again."""
    old = progress.stops
    progress.stops = {s.order_id: old.get(s.order_id) or StopState() for s in plan.stops}
    for state in progress.stops.values():
        state.delay_level = 0
    progress.route_id, progress.version = plan.route_id, plan.version
    if progress.dwell and progress.dwell[0] not in progress.stops:
        progress.dwell = None
    if progress.origin.order_id is not None and progress.origin.order_id not in progress.stops:
        progress.origin.order_id = ""  # a place the new plan no longer has: estimates from there
    step = Step(progress)
    if progress.started:
        basis = progress.fix.at if progress.fix else now
        _recompute(plan, step, max(basis, progress.origin.at), now, cfg)
        step.events = [e for e in step.events if not isinstance(e, ev.DeliveryDelayed)]  # levels kept, untold
    return step


# ---------------------------------------------------------------------------------------------------------
# Arrivals and departures: open → arrived (a stay inside the radius) → visited (left) ; any → done (driver)


def _follow(plan: Plan, step: Step, fix: Fix, weight: float, cfg: EtaConfig) -> None:
    progress = step.progress
    for stop in plan.stops:
        state = progress.stops[stop.order_id]
        if state.status == "arrived":
            away = distance_m(fix.lat, fix.lon, stop.lat, stop.lon)
            if away > cfg.departure_radius_m:
                state.status = "visited"  # the leg from here began when it was last seen here
            elif away <= cfg.arrival_radius_m:
                progress.origin.at = fix.at
    at_depot = distance_m(fix.lat, fix.lon, plan.start_lat, plan.start_lon) <= cfg.arrival_radius_m
    if progress.origin.order_id is None and at_depot:
        progress.origin.at = max(progress.origin.at, fix.at)
    slack = min(fix.accuracy_m or 0.0, cfg.arrival_radius_m)
    inside = _inside(plan, progress, fix, cfg.arrival_radius_m + slack)
    if progress.dwell is not None and (inside is None or progress.dwell[0] != inside.order_id):
        _left(progress, progress.dwell[0])
    if inside is None:
        progress.dwell = None
        return
    if weight < 0.5:  # a vague fix can neither begin nor confirm a stay
        return
    if progress.dwell is None or progress.dwell[0] != inside.order_id:
        progress.dwell = (inside.order_id, fix.at)
    if (fix.at - progress.dwell[1]).total_seconds() >= cfg.dwell_s:
        _arrive(plan, step, inside, progress.dwell[1], weight, cfg)
        progress.dwell = None


def _left(progress: Progress, order_id: str) -> None:
    """A stay too short to be an arrival ended: the vehicle drove past the stop."""
    state = progress.stops.get(order_id)
    if state is not None and state.status == "open":
        state.passed = True


def _inside(plan: Plan, progress: Progress, fix: Fix, radius: float) -> PlannedStop | None:
    best, best_d = None, radius
    for stop in plan.stops:
        if progress.stops[stop.order_id].status != "open":
            continue
        d = distance_m(fix.lat, fix.lon, stop.lat, stop.lon)
        if d <= best_d:
            best, best_d = stop, d
    return best


def _arrive(plan: Plan, step: Step, stop: PlannedStop, at: datetime, weight: float, cfg: EtaConfig) -> None:
    progress = step.progress
    state = progress.stops[stop.order_id]
    planned = _travel_between(plan, progress.origin, stop)
    actual = (at - progress.origin.at).total_seconds()
    if planned >= 60 and actual > 0:
        ratio = min(cfg.pace_max, max(cfg.pace_min, actual / planned))
        pace = progress.pace + cfg.pace_alpha * weight * (ratio - progress.pace)
        progress.pace = min(cfg.pace_max, max(cfg.pace_min, pace))
    state.status, state.arrived_at = "arrived", at
    progress.origin = Origin(stop.order_id, stop.lat, stop.lon, at)
    location = ev.GeoPoint(lat=stop.lat, lon=stop.lon)
    step.events.append(
        ev.Arrived(order_id=stop.order_id, vehicle_id=plan.vehicle_id, at=at, location=location)
    )
    step.errors += _errors(state, at, cfg)
    state.samples = []


def _near(fix: Fix | None, stop: PlannedStop, cfg: EtaConfig) -> bool:
    return fix is not None and distance_m(fix.lat, fix.lon, stop.lat, stop.lon) <= cfg.departure_radius_m


def _errors(state: StopState, arrived: datetime, cfg: EtaConfig) -> list[EtaError]:
    """How far off the ETA and the plan were, as known `h` before the actual arrival, for each horizon h."""
    errors = []
    actual = arrived.timestamp()
    for horizon in cfg.horizons_s:
        known = [s for s in state.samples if actual - horizon - cfg.sample_every_s < s[0] <= actual - horizon]
        if known:
            _, eta, planned = max(known)
            errors.append(EtaError(horizon, "live", abs(actual - eta)))
            errors.append(EtaError(horizon, "planned", abs(actual - planned)))
    return errors


# ---------------------------------------------------------------------------------------------------------
# ETAs


def _chain(plan: Plan, progress: Progress) -> list[PlannedStop]:
    """Stops still to reach, in the order they will be: the one the vehicle is at, the open ones in the plan's
    order, then the skipped ones (driven past before a later stop: the driver will come back for them).

    A stop served ahead of its turn skips nothing by itself: the driver's app had an older version of the route,
    or the new version put the stop the vehicle waited at after others. Taken as skips, the stops before it were
    estimated at the route's end, hours late, until the next version (in the make-demo day, 5 % of the ETAs
    customers saw 30 minutes out)."""
    states = progress.stops
    here = [s for s in plan.stops if states[s.order_id].status == "arrived"]
    visited = [s.sequence for s in plan.stops if states[s.order_id].status in ("arrived", "visited")]
    origin_stop = plan.stop(progress.origin.order_id)
    last = max([*visited, origin_stop.sequence if origin_stop else 0])
    pending = [s for s in plan.stops if states[s.order_id].status == "open"]
    skipped = {s.order_id for s in pending if s.sequence <= last and states[s.order_id].passed}
    return (
        here
        + [s for s in pending if s.order_id not in skipped]
        + [s for s in pending if s.order_id in skipped]
    )


def _recompute(plan: Plan, step: Step, basis: datetime, now: datetime, cfg: EtaConfig) -> None:
    """Every remaining stop's ETA from `basis` (the position's time); events where they moved enough."""
    progress = step.progress
    origin, fix = progress.origin, progress.fix
    free = fix is not None and fix.at > origin.at  # on the road: the chain starts from the position
    cursor_t = fix.at if free and fix else max(basis, origin.at)
    if not free and origin.order_id is None:
        cursor_t = max(cursor_t, plan.start_at)  # still at the depot: leaves as planned
    cursor = origin
    for index, stop in enumerate(_chain(plan, progress)):
        state = progress.stops[stop.order_id]
        if state.status == "arrived":
            eta = state.arrived_at or cursor_t
            cursor_t = max(basis, eta + timedelta(seconds=stop.service_s))
            cursor, free = Origin(stop.order_id, stop.lat, stop.lon, cursor_t), False
            step.etas[stop.order_id] = (eta, index)
            state.before = index
            continue
        if free and fix is not None:
            travel = _travel_from(plan, fix.lat, fix.lon, cursor, stop)
        else:
            travel = _travel_between(plan, cursor, stop)
        eta = max(cursor_t + timedelta(seconds=travel * progress.pace), now)
        if stop.not_before is not None:
            eta = max(eta, stop.not_before)
        state.eta, state.before = eta, index
        step.etas[stop.order_id] = (eta, index)
        if progress.started:
            _announce(plan, step, stop, state, eta, index, now, basis, cfg)
        cursor_t = eta + timedelta(seconds=stop.service_s)
        cursor, free = Origin(stop.order_id, stop.lat, stop.lon, cursor_t), False


def _follows(plan: Plan, origin: Origin, stop: PlannedStop) -> bool:
    """Is `stop` the one the plan drives to next from `origin` (a stop, or the depot)?"""
    if origin.order_id == "":
        return False
    following = plan.after(origin.order_id)
    return following is not None and following.order_id == stop.order_id


def _estimate(plan: Plan, lat: float, lon: float, stop: PlannedStop) -> float:
    return distance_m(lat, lon, stop.lat, stop.lon) * plan.circuity / plan.speed_mps


def _travel_between(plan: Plan, origin: Origin, stop: PlannedStop) -> float:
    """Planned driving time from a place of the plan: its leg when the stop follows it, else an estimate."""
    if _follows(plan, origin, stop):
        return float(stop.leg_duration_s)
    return _estimate(plan, origin.lat, origin.lon, stop)


def _travel_from(plan: Plan, lat: float, lon: float, leg_origin: Origin, stop: PlannedStop) -> float:
    """Planned driving time from a position on the road: the part of the planned leg still ahead (by the
    share of straight-line distance left), or an estimate when the vehicle is not on that leg."""
    if _follows(plan, leg_origin, stop):
        whole = distance_m(leg_origin.lat, leg_origin.lon, stop.lat, stop.lon)
        if whole > 100:
            left = distance_m(lat, lon, stop.lat, stop.lon)
            return stop.leg_duration_s * min(1.5, left / whole)
    return _estimate(plan, lat, lon, stop)


def _announce(
    plan: Plan,
    step: Step,
    stop: PlannedStop,
    state: StopState,
    eta: datetime,
    stops_before: int,
    now: datetime,
    basis: datetime,
    cfg: EtaConfig,
) -> None:
    vehicle = plan.vehicle_id
    if not state.out:
        state.out, state.published = True, eta
        step.events.append(
            ev.OutForDelivery(
                order_id=stop.order_id, vehicle_id=vehicle, route_id=plan.route_id, eta=eta, at=now
            )
        )
    left = (eta - now).total_seconds()  # until the ETA
    soon = stops_before == 0 and left <= cfg.arriving_soon_s
    threshold = max(cfg.change_threshold_s, cfg.change_fraction * left)
    moved = state.published is None or abs((eta - state.published).total_seconds()) >= threshold
    if moved or (soon and not state.soon):
        step.events.append(
            ev.EtaChanged(
                order_id=stop.order_id,
                vehicle_id=vehicle,
                eta=eta,
                previous_eta=state.published,
                stops_before=stops_before,
                arriving_soon=soon,
                at=now,
                position_at=basis,
            )
        )
        state.published, state.soon = eta, state.soon or soon
    delay = (eta - stop.planned_arrival).total_seconds()
    level = int(delay // cfg.delay_threshold_s) if delay >= cfg.delay_threshold_s else 0
    # Late against the plan, but the promise still holds: nobody needs to act (the customer hears of the ETA
    # itself). Told of every such delay, the planner re-planned whole days for stops that were fine.
    kept = stop.promised_end is not None and eta <= stop.promised_end
    due = left <= cfg.delay_horizon_s
    if level > state.delay_level and due and not kept:
        state.delay_level = level
        step.events.append(
            ev.DeliveryDelayed(
                order_id=stop.order_id,
                vehicle_id=vehicle,
                route_id=plan.route_id,
                delay_s=int(delay),
                eta=eta,
                at=now,
            )
        )


def _sample(plan: Plan, step: Step, at: datetime, cfg: EtaConfig) -> None:
    """Every few minutes, remember each near stop's ETA and plan, to measure them against its arrival."""
    progress = step.progress
    slot = int(at.timestamp() // cfg.sample_every_s)
    if slot <= progress.sample_slot:
        return
    progress.sample_slot = slot
    reach = max(cfg.horizons_s, default=0) + cfg.sample_every_s
    when = round(at.timestamp())
    for stop in plan.stops:
        state = progress.stops[stop.order_id]
        if state.status != "open" or state.eta is None:
            continue
        state.samples = [s for s in state.samples if s[0] >= when - reach]
        if state.eta.timestamp() - when <= reach:
            state.samples.append(
                [when, round(state.eta.timestamp()), round(stop.planned_arrival.timestamp())]
            )


# ---------------------------------------------------------------------------------------------------------
# Progress as JSON (compact: epoch seconds)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dump(progress: Progress) -> dict[str, Any]:
    fix = progress.fix
    return {
        "route": progress.route_id,
        "version": progress.version,
        "started": progress.started,
        "pace": round(progress.pace, 4),
        "fix": None if fix is None else [fix.lat, fix.lon, fix.at.timestamp(), fix.accuracy_m],
        "origin": [
            progress.origin.order_id,
            progress.origin.lat,
            progress.origin.lon,
            progress.origin.at.timestamp(),
        ],
        "dwell": None if progress.dwell is None else [progress.dwell[0], progress.dwell[1].timestamp()],
        "slot": progress.sample_slot,
        "stops": {k: _dump_stop(s) for k, s in progress.stops.items()},
    }


def _dump_stop(s: StopState) -> dict[str, Any]:
    return {
        "status": s.status,
        "out": s.out,
        "arrived": _ts(s.arrived_at),
        "eta": _ts(s.eta),
        "published": _ts(s.published),
        "soon": s.soon,
        "delay": s.delay_level,
        "before": s.before,
        "passed": s.passed,
        "samples": s.samples,
    }


def load(data: dict[str, Any]) -> Progress:
    fix, origin, dwell = data["fix"], data["origin"], data["dwell"]
    return Progress(
        route_id=data["route"],
        version=data["version"],
        started=data["started"],
        pace=data["pace"],
        fix=None if fix is None else Fix(fix[0], fix[1], datetime.fromtimestamp(fix[2], UTC), fix[3]),
        origin=Origin(origin[0], origin[1], origin[2], datetime.fromtimestamp(origin[3], UTC)),
        dwell=None if dwell is None else (dwell[0], datetime.fromtimestamp(dwell[1], UTC)),
        sample_slot=data["slot"],
        stops={k: _load_stop(v) for k, v in data["stops"].items()},
    )


def _load_stop(d: dict[str, Any]) -> StopState:
    return StopState(
        status=d["status"],
        out=d["out"],
        arrived_at=_dt(d["arrived"]),
        eta=_dt(d["eta"]),
        published=_dt(d["published"]),
        soon=d["soon"],
        delay_level=d["delay"],
        before=d.get("before"),
        passed=d.get("passed", False),
        samples=d["samples"],
    )
