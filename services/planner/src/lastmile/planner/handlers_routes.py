"""Routes and deliveries as a plan changes them: route versions, scheduled and unassigned orders, and their
events (routes.v1, deliveries.v1). A route gets a new version only when its stops, promises or lateness change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.ids import new_id
from lastmile.planner.domain import DepotSpec
from lastmile.planner.handlers import DONE, SOURCE
from lastmile.planner.planning import PlannedRoute, PlannedStop
from lastmile.planner.store import JobRow, RouteRow

JOBS_PLANNED = Counter("lastmile_planner_jobs_planned_total", "Orders put on a route (or moved)", ["depot"])
JOBS_UNASSIGNED = Counter(
    "lastmile_planner_jobs_unassigned_total", "Orders left out, by reason", ["depot", "reason"]
)
ROUTE_DISTANCE = Histogram(
    "lastmile_planner_route_distance_meters",
    "Planned distance of each route",
    ["depot"],
    buckets=(1e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5),
)
ROUTE_DURATION = Histogram(
    "lastmile_planner_route_duration_seconds",
    "Planned duration of each route, first stop to return",
    ["depot"],
    buckets=(600, 1800, 3600, 7200, 14400, 28800, 43200),
)


def save_route(
    session: AsyncSession,
    route: RouteRow | None,
    planned: PlannedRoute,
    stops: list[PlannedStop],
    jobs: dict[str, JobRow],
    depot: DepotSpec,
    day: date,
    plan_id: str,
    reason: str,
    moved: int,
    now: datetime,
) -> RouteRow:
    before = [] if route is None else route.snapshot.get("stops", [])
    done = _done_first(before, jobs, now)
    fresh = [_route_stop(s, len(done) + i + 1) for i, s in enumerate(stops)]
    # On board, yet left out by the plan (it no longer fits the shift): it stays on the route, last, as it was.
    planned_ids = {s.order_id for s in stops}
    left_on_board = (
        []
        if route is None
        else [s for s in before if _on_board(jobs, s["order_id"], route) and s["order_id"] not in planned_ids]
    )
    fresh += [
        ev.RouteStop.model_validate({**s, "sequence": len(done) + len(fresh) + i + 1})
        for i, s in enumerate(left_on_board)
    ]
    if (
        route is not None
        and route.status != "cancelled"
        and _key(route.snapshot.get("stops", []), jobs)
        == [_stop_key(s.model_dump(mode="json")) for s in fresh]
    ):
        return route  # nothing a driver or customer would see changed: no new version, no event
    if route is None:
        route = RouteRow(
            id=new_id("rte"), vehicle_id=planned.vehicle_id, depot_id=depot.id, service_date=day, version=0
        )
        session.add(route)
    route.version += 1
    route.status = "started" if route.status == "started" else "planned"
    route.plan_id, route.updated_at = plan_id, now
    payload_cls = ev.RoutePlanned if route.version == 1 else ev.RouteRevised
    extra = {"reason": reason, "stops_moved": moved} if payload_cls is ev.RouteRevised else {}
    snapshot = payload_cls(
        route_id=route.id,
        version=route.version,
        vehicle_id=planned.vehicle_id,
        depot_id=depot.id,
        plan_id=route.plan_id,
        service_date=day,
        start=ev.GeoPoint(lat=planned.start[0], lon=planned.start[1]),
        end=ev.GeoPoint(lat=depot.lat, lon=depot.lon),
        start_at=planned.start_at,
        end_at=planned.end_at,
        distance_m=planned.distance_m,
        duration_s=planned.duration_s,
        stops=[ev.RouteStop.model_validate(s) for s in done] + fresh,
        **extra,
    )
    route.snapshot = snapshot.model_dump(mode="json")
    outbox.add(session, snapshot, source=SOURCE)
    return route


def _done(jobs: dict[str, JobRow], order_id: str) -> bool:
    job = jobs.get(order_id)
    return job is not None and job.status in DONE


def _done_first(stops: list[dict[str, Any]], jobs: dict[str, JobRow], now: datetime) -> list[dict[str, Any]]:
    """The stops done, first and numbered 1, 2, ... in the order they were done. Kept at their old numbers, a stop
    done out of order (the driver's app had an older route) outnumbered the open stops after it, and the
    tracker took those for skipped ones and put them at the route's end: ETAs hours late, customers told so."""
    done = sorted(
        (s for s in stops if _done(jobs, s["order_id"])),
        key=lambda s: (jobs[s["order_id"]].done_at or now, s["sequence"]),
    )
    return [{**s, "sequence": i + 1} for i, s in enumerate(done)]


def _on_board(jobs: dict[str, JobRow], order_id: str, route: RouteRow) -> bool:
    """Out for delivery on this route (a stop a re-plan moved to another vehicle is not this route's)."""
    job = jobs.get(order_id)
    return job is not None and job.status == "out" and job.route_id == route.id


def _key(stops: list[dict[str, Any]], jobs: dict[str, JobRow]) -> list[tuple[Any, ...]]:
    return [_stop_key(s) for s in stops if not _done(jobs, s["order_id"])]


def _stop_key(stop: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("order_id", "location", "kind", "service_s", "promised_window", "lateness_s", "trip")
    return tuple(str(stop.get(k)) for k in keys)


def _route_stop(s: PlannedStop, sequence: int) -> ev.RouteStop:
    return ev.RouteStop(
        stop_id=s.order_id,
        order_id=s.order_id,
        kind="pickup" if s.kind == "pickup" else "delivery",
        sequence=sequence,
        location=ev.GeoPoint(lat=s.lat, lon=s.lon),
        planned_arrival=s.arrival,
        planned_departure=s.departure,
        service_s=s.service_s,
        promised_window=ev.TimeWindow(start=s.promised[0], end=s.promised[1]),
        leg_distance_m=s.leg_distance_m,
        leg_duration_s=s.leg_duration_s,
        lateness_s=s.lateness_s,
        trip=s.trip,
    )


def schedule(
    session: AsyncSession, job: JobRow, stop: PlannedStop, route: RouteRow, day: date, depot_id: str
) -> None:
    """The order is on this route with this promise; customers hear of it only when that changes."""
    unchanged = (
        job.status in ("planned", "out")
        and job.route_id == route.id
        and job.promised == stop.promised
        and _late_by(job.lateness_s) == _late_by(stop.lateness_s)
    )
    job.status = "out" if job.status == "out" else "planned"
    job.vehicle_id, job.route_id, job.reason = route.vehicle_id, route.id, None
    job.planned_arrival, job.lateness_s = stop.arrival, stop.lateness_s
    job.promised_start, job.promised_end = stop.promised
    if unchanged:
        return
    JOBS_PLANNED.labels(depot_id).inc()
    scheduled = ev.DeliveryScheduled(
        order_id=stop.order_id,
        depot_id=depot_id,
        vehicle_id=route.vehicle_id,
        route_id=route.id,
        route_version=route.version,
        planned_arrival=stop.arrival,
        promised_window=ev.TimeWindow(start=stop.promised[0], end=stop.promised[1]),
        service_date=day,
        lateness_s=stop.lateness_s,
    )
    outbox.add(session, scheduled, source=SOURCE)


def _late_by(lateness_s: int | None) -> bool:
    """Whether the stop is planned late. Its lateness changes by seconds with every re-plan, and announcing
    each change (or each quarter hour, where re-plans flapped across the steps) re-announced the day's late
    stops on every re-plan: most of deliveries.v1, and no consumer reads the figure."""
    return (lateness_s or 0) > 0


def cancel_emptied(
    session: AsyncSession, routes: dict[str, RouteRow], kept: set[str], jobs: dict[str, JobRow], now: datetime
) -> None:
    """Routes the plan left with no open stop: cancelled if not started; if started, revised to the stops done
    and those on board (a parcel out for delivery stays on its vehicle's route, whether the plan could fit it or
    not: dropping it from the route would leave it out for delivery with no driver told to deliver it).

    A route with a stop done has started, whatever its status says: cancelled, its parcels still on board stayed
    out for delivery with no driver to deliver them or to fail them at the day's end (21 orders in one
    distributed make-demo day)."""
    for vehicle_id, route in routes.items():
        if vehicle_id in kept or route.status == "cancelled":
            continue
        stops = route.snapshot.get("stops", [])
        started = route.status == "started" or any(_done(jobs, s["order_id"]) for s in stops)
        staying = [
            s
            for s in stops
            if _done(jobs, s["order_id"]) or (started and _on_board(jobs, s["order_id"], route))
        ]
        if len(staying) == len(stops):
            continue
        route.version, route.updated_at = route.version + 1, now
        if started:
            on_board = any(_on_board(jobs, s["order_id"], route) for s in staying)
            reason = "not re-planned: only stops on board left" if on_board else "no stops left"
            revised = ev.RouteRevised.model_validate(
                {**route.snapshot, "version": route.version, "stops": staying, "reason": reason}
            )
            route.snapshot = revised.model_dump(mode="json")
            outbox.add(session, revised, source=SOURCE)
            continue
        route.status = "cancelled"
        route.snapshot = {**route.snapshot, "stops": [], "version": route.version}
        cancelled = ev.RouteCancelled(
            route_id=route.id, version=route.version, vehicle_id=vehicle_id, reason="no stops left"
        )
        outbox.add(session, cancelled, source=SOURCE)


def unassign(session: AsyncSession, job: JobRow, reason: str, detail: str) -> None:
    if job.status == "out" or (job.status == "unassigned" and job.reason == reason):
        return  # on board stays on board; the same reason again is no news
    job.status, job.reason, job.vehicle_id, job.route_id = "unassigned", reason, None, None
    job.promised_start = job.promised_end = job.planned_arrival = None
    JOBS_UNASSIGNED.labels(job.depot_id, reason).inc()
    payload = ev.DeliveryUnassigned(
        order_id=job.order_id, depot_id=job.depot_id, reason=reason, detail=detail
    )
    outbox.add(session, payload, source=SOURCE)
