"""The ETA engine at work: routes from routes.v1, positions from locations.v1 (co-partitioned by vehicle), and
what they produce on deliveries.v1 (out for delivery, ETA changed, arrived, delayed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.db import Database
from lastmile.common.metrics import LATENCY_BUCKETS
from lastmile.tracker import domain_eta as engine
from lastmile.tracker.deps import SOURCE, Deps
from lastmile.tracker.domain import Fix
from lastmile.tracker.domain_eta import Plan, Progress, Step
from lastmile.tracker.store import ProgressUpdate, RouteHead, RouteRow, StopRow, TrackerStore

ETA_CHANGES = Counter("lastmile_tracker_eta_changes_total", "EtaChanged events published")
ARRIVALS = Counter("lastmile_tracker_arrivals_total", "Arrivals at stops detected from positions")
DELAYS = Counter("lastmile_tracker_delays_total", "DeliveryDelayed events published")
ETA_HORIZON_ERROR = Histogram(
    "lastmile_tracker_eta_horizon_error_seconds",
    "How far the arrival time known a horizon before the actual arrival was from it: the live ETA, and the plan",
    ["horizon", "source"],
    buckets=(30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200),
)
DONE = ("delivered", "failed")  # a stop's results: final
LOCATION_LAG = Histogram(
    "lastmile_tracker_location_lag_seconds",
    "From a ping's arrival to the ETA engine taking its position",
    buckets=LATENCY_BUCKETS,
)


async def on_route(session: AsyncSession, envelope: ev.Envelope, event: ev.RouteSnapshot, deps: Deps) -> None:
    """Keep the latest version of the vehicle's route and its stops; a route being driven is re-estimated."""
    store = TrackerStore(session)
    await _lock_batch(store, session, event)
    route = await store.route(event.route_id, lock=True)
    if route is not None and route.version >= event.version:
        return
    if route is None:
        route = RouteRow(id=event.route_id, vehicle_id=event.vehicle_id, status="planned", progress_seq=0)
        session.add(route)
    route.service_date, route.start_at, route.version = event.service_date, event.start_at, event.version
    route.snapshot, route.updated_at = event.model_dump(mode="json"), envelope.time
    done_elsewhere = await _keep_stops(store, session, route, event, envelope.time)
    if done_elsewhere:
        event = event.model_copy(
            update={"stops": [s for s in event.stops if s.order_id not in done_elsewhere]}
        )
        route.snapshot = event.model_dump(mode="json")
    if route.status == "cancelled":
        route.status, route.progress, route.progress_seq = "planned", None, route.progress_seq + 1
    plan = deps.plans.put(route.id, route.version, Plan.from_snapshot(event))
    if route.progress is not None:
        step = engine.revise(plan, engine.load(route.progress), deps.clock.now(), deps.eta)
        await apply(session, store, route, plan, step, deps)


async def _lock_batch(store: TrackerStore, session: AsyncSession, event: ev.Payload) -> None:
    """Before a routes.v1 transaction changes anything, it locks every route of its events, then every stop they
    carry, each in key order (see store._ROUTE_HEADS). Event by event instead, a batch that moves a stop from one
    route to another held that stop while waiting for a route that a driver's completion held, and the
    completion, re-estimating its route's stops, waited for that stop: a deadlock."""
    if session.info.get("tracker.routes_locked"):
        return
    session.info["tracker.routes_locked"] = True
    batch = session.info.get("batch") or [event]
    changes = [e for e in batch if isinstance(e, ev.RouteSnapshot | ev.RouteCancelled)]
    await store.lock_routes([e.route_id for e in changes])
    await store.lock_stops([s.order_id for e in changes if isinstance(e, ev.RouteSnapshot) for s in e.stops])


async def _keep_stops(
    store: TrackerStore, session: AsyncSession, route: RouteRow, event: ev.RouteSnapshot, at: datetime
) -> set[str]:
    """The route's stops as rows; returns the stops it names that were done on another route.

    A stop done stays done where it was done, as in the planner (which never re-plans one): a route naming it
    for another vehicle comes from a plan made before the planner heard of the result (a re-plan that moved
    the stop crossed the first driver's result). Reopened, a delivered parcel was sent out again with the
    second van and ended "failed, not attempted" when that route was finished."""
    existing = await store.stops_of([s.order_id for s in event.stops])
    elsewhere: set[str] = set()
    for s in event.stops:
        row = existing.get(s.order_id)
        if row is None:
            row = StopRow(order_id=s.order_id, status="planned", scheduled_at=at)
            session.add(row)
        elif row.status in DONE:
            if row.route_id != route.id:
                elsewhere.add(s.order_id)
            continue
        row.route_id, row.vehicle_id, row.sequence = route.id, event.vehicle_id, s.sequence
        row.planned_arrival = s.planned_arrival
        window = s.promised_window
        row.promised_start, row.promised_end = (window.start, window.end) if window else (None, None)
    return elsewhere


async def on_route_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.RouteCancelled, deps: Deps
) -> None:
    store = TrackerStore(session)
    await _lock_batch(store, session, event)
    route = await store.route(event.route_id, lock=True)
    if route is not None and route.version < event.version:
        route.version, route.status, route.progress = event.version, "cancelled", None
        route.progress_seq += 1


async def on_location(
    session: AsyncSession, envelope: ev.Envelope, event: ev.LocationReported, deps: Deps
) -> None:
    """A position. In a batch (the consume loop hands a partition's records to one transaction) the first call
    takes every position of the batch at once, vehicle by vehicle, and the others have nothing left to do."""
    batch = session.info.get("batch")
    if batch is None:
        await on_locations(session, [event], deps)
    elif not session.info.get("tracker.locations_done"):
        session.info["tracker.locations_done"] = True
        await on_locations(session, [e for e in batch if isinstance(e, ev.LocationReported)], deps)


async def on_locations(session: AsyncSession, reports: Sequence[ev.LocationReported], deps: Deps) -> None:
    """Positions of a partition's vehicles, in order; suspect ones are kept out of the ETAs. The whole batch
    costs a few statements whatever its size: its routes (locked), their progress, the stops' ETAs."""
    now = deps.clock.now()
    fixes: dict[str, list[ev.LocationReported]] = {}
    for report in reports:
        LOCATION_LAG.observe(max(0.0, (now - report.received_at).total_seconds()))
        if not report.suspect:
            fixes.setdefault(report.vehicle_id, []).append(report)
    if not fixes:
        return
    store = TrackerStore(session)
    routes = await store.route_heads(list(fixes))
    saved: list[ProgressUpdate] = []
    steps: list[tuple[str, Step]] = []
    for vehicle, reports in fixes.items():
        route = routes.get(vehicle)
        if route is None:
            continue
        plan = await plan_of(store, route, deps)
        progress = deps.progress.take(route.id, route.progress_seq) or await _progress(store, route.id, plan)
        step = Step(progress)
        for report in sorted(reports, key=lambda r: r.recorded_at):
            fix = Fix(report.lat, report.lon, report.recorded_at, report.accuracy_m)
            _merge(step, engine.observe(plan, progress, fix, now, deps.eta))
        starts = progress.started and route.status == "planned"
        seq = route.progress_seq + 1
        saved.append(
            ProgressUpdate(
                route.id,
                orjson.dumps(engine.dump(progress)).decode(),
                seq,
                "started" if starts else route.status,
                now if starts else None,
            )
        )
        _cache_after_commit(session, deps, route.id, seq, progress)
        steps.append((vehicle, step))
    if saved:
        await store.save_progress(saved)
        await publish(session, store, steps, deps)


async def _progress(store: TrackerStore, route_id: str, plan: Plan) -> Progress:
    saved = await store.progress(route_id)
    return engine.load(saved) if saved else Progress.begin(plan)


async def plan_of(store: TrackerStore, route: RouteRow | RouteHead, deps: Deps) -> Plan:
    plan = deps.plans.get(route.id, route.version)
    if plan is None:
        snapshot = ev.RouteSnapshot.model_validate(await store.snapshot(route.id))
        plan = deps.plans.put(route.id, route.version, Plan.from_snapshot(snapshot))
    return plan


def _merge(into: Step, step: Step) -> None:
    into.events += step.events
    into.errors += step.errors
    into.etas.update(step.etas)


def _cache_after_commit(
    session: AsyncSession, deps: Deps, route_id: str, seq: int, progress: Progress
) -> None:
    Database.after_commit(session, lambda: deps.progress.put(route_id, seq, progress))


async def apply(
    session: AsyncSession, store: TrackerStore, route: RouteRow, plan: Plan, step: Step, deps: Deps
) -> None:
    """Save the engine's progress (of a route loaded whole), publish its events and keep the stops' rows in
    step with them."""
    route.progress, route.progress_seq = engine.dump(step.progress), route.progress_seq + 1
    _cache_after_commit(session, deps, route.id, route.progress_seq, step.progress)
    if step.progress.started and route.status == "planned":
        route.status, route.started_at = "started", deps.clock.now()
    await publish(session, store, [(route.vehicle_id, step)], deps)


async def publish(
    session: AsyncSession, store: TrackerStore, steps: Sequence[tuple[str, Step]], deps: Deps
) -> None:
    """The engine's events (of each vehicle's step) in the outbox, and the stops' rows in step with them."""
    events = [event for _, step in steps for event in step.events]
    at = outbox.event_time(session)
    for event in events:
        outbox.stage(session, event.TOPIC, event.key(), event.serialised(SOURCE, time=at))
    moves = [e for e in events if isinstance(e, ev.OutForDelivery | ev.Arrived)]  # rare: rows loaded
    changes = [e for e in events if isinstance(e, ev.EtaChanged)]  # frequent: one statement, no loading
    if moves:  # every stop changed here locked first, in order (record_etas alone locks its own in order)
        await store.lock_stops([e.order_id for e in (*moves, *changes)])
        stops = await store.stops_of([e.order_id for e in moves])
        for event in moves:
            if event.order_id in stops:
                _follow_event(stops[event.order_id], event)
        await session.flush()  # before the bulk update below, which must have the last word on ETAs
    if changes:
        await store.record_etas([(e.order_id, e.eta, e.at if e.arriving_soon else None) for e in changes])
    ETA_CHANGES.inc(len(changes))
    ARRIVALS.inc(sum(isinstance(e, ev.Arrived) for e in events))
    DELAYS.inc(sum(isinstance(e, ev.DeliveryDelayed) for e in events))
    for _, step in steps:
        for error in step.errors:
            ETA_HORIZON_ERROR.labels(f"{error.horizon_s // 60}m", error.source).observe(error.error_s)
    vehicles = [vehicle for vehicle, _ in steps]
    Database.after_commit(session, lambda: deps.changes.notify(vehicles))


def _follow_event(stop: StopRow, event: ev.Payload) -> None:
    if stop.status in ("delivered", "failed"):
        return
    if isinstance(event, ev.OutForDelivery):
        stop.status, stop.out_at, stop.eta = "out", event.at, event.eta
    elif isinstance(event, ev.Arrived):
        stop.status, stop.arrived_at = "arrived", event.at
