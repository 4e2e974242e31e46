"""Drivers' actions: start a route, complete a stop (delivered with proof, or failed with a reason), finish a
route. Each moves the ETA engine too, in the same transaction."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timedelta

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.db import Database
from lastmile.common.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from lastmile.tracker import domain
from lastmile.tracker import domain_eta as engine
from lastmile.tracker.deps import SOURCE, Deps, Device
from lastmile.tracker.domain import CompleteStop, ProofImage
from lastmile.tracker.domain_eta import Progress, Step
from lastmile.tracker.handlers_eta import DONE, apply, plan_of
from lastmile.tracker.store import ProofImageRow, RouteRow, StopRow, TrackerStore

STOPS_COMPLETED = Counter(
    "lastmile_tracker_stops_completed_total",
    "Stops completed, by outcome and whether inside the window promised to the customer",
    ["outcome", "on_time"],
)
ETA_ERROR = Histogram(
    "lastmile_tracker_eta_error_seconds",
    "How far the stop's last ETA was from its completion, either way",
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
)
NOT_ATTEMPTED = "not attempted: the route was finished"
RETRY_SOON = {"Retry-After": "1"}


async def complete_stop(order_id: str, cmd: CompleteStop, device: Device, deps: Deps) -> StopRow:
    """Delivered (with proof) or failed (with a reason), by the driver of the vehicle the stop is on."""
    problem = domain.completion_problem(cmd)
    if problem:
        raise Unprocessable(problem, code="incoherent-completion")
    images = {
        kind: _image(kind, image, deps)
        for kind, image in (("photo", cmd.photo), ("signature", cmd.signature))
    }
    now = deps.clock.now()
    at = min(cmd.completed_at or now, now)
    async with deps.db.transaction() as session:
        store = TrackerStore(session)
        stop, route = await _locked_stop(store, order_id, device, deps)
        if stop is None or stop.vehicle_id != device.vehicle_id:
            raise NotFound(f"Stop {order_id} is not on this vehicle's route")
        if stop.status in DONE:
            raise Conflict(f"Stop {order_id} is already {stop.status}", code="stop-completed")
        if route is not None:
            await _advance(session, store, route, order_id, at, deps)
        stop.status, stop.completed_at = cmd.outcome, at
        stop.failure_reason = cmd.reason if cmd.outcome == "failed" else None
        stop.proof = cmd.model_dump(mode="json", exclude_none=True, exclude={"photo", "signature"})
        stop.proof |= {kind: image is not None for kind, image in images.items()}
        for kind, image in images.items():
            if image is not None:
                await _keep_image(session, store, order_id, kind, image, now)
        event = domain.outcome_event(
            order_id,
            device.vehicle_id,
            cmd,
            at,
            photo=images["photo"] is not None,
            signature=images["signature"] is not None,
        )
        outbox.add(session, event, source=SOURCE)
        if route is not None:
            await _finish_when_done(store, route, now)
        _count_completion(stop, cmd, at)
        tracking = await store.tracking_of(order_id)
        if tracking is not None and cmd.outcome == "delivered":
            tracking.expires_at = at + timedelta(seconds=deps.settings.tracking_grace_s)
        vehicle = device.vehicle_id
        Database.after_commit(session, lambda: deps.changes.notify([order_id, vehicle]))
    return stop


async def _locked_stop(
    store: TrackerStore, order_id: str, device: Device, deps: Deps
) -> tuple[StopRow | None, RouteRow | None]:
    """The stop and its route, locked in the order every writer takes them (store._ROUTE_HEADS): the route, then
    the stops a completion changes (its own, and the route's planned stops, whose ETAs move), the stop read
    again once locked. A stop that the planner moved to another route meanwhile: again with that route (a lock
    out of order, so rare that a deadlock it might cause is only retried, as any other). Another vehicle's stop
    is not locked."""
    for _ in range(3):
        stop = await store.stop(order_id)
        if stop is None or stop.vehicle_id != device.vehicle_id:
            return stop, None
        route = await store.route(stop.route_id, lock=True)
        orders = [order_id]
        if route is not None:
            orders += [s.order_id for s in (await plan_of(store, route, deps)).stops]
        stop = (await store.locked_stops(orders)).get(order_id)
        if stop is None or route is None or stop.route_id == route.id:
            return stop, route
    raise ServiceUnavailable(f"Stop {order_id} is being moved between routes; retry", headers=RETRY_SOON)


def _count_completion(stop: StopRow, cmd: CompleteStop, at: datetime) -> None:
    window = (stop.promised_start, stop.promised_end)
    on_time = window[0] is not None and window[1] is not None and window[0] <= at <= window[1]
    STOPS_COMPLETED.labels(cmd.outcome, str(on_time).lower()).inc()
    if stop.eta is not None:
        ETA_ERROR.observe(abs((at - stop.eta).total_seconds()))


def _image(kind: str, image: ProofImage | None, deps: Deps) -> tuple[str, bytes] | None:
    if image is None:
        return None
    limit = deps.settings.proof_image_max_bytes
    if len(image.content_base64) > limit * 4 // 3 + 8:
        raise Unprocessable(f"The {kind} is larger than {limit} bytes", code="image-too-large")
    try:
        data = base64.b64decode(image.content_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(f"The {kind} is not valid base64", code="invalid-image") from exc
    content_type = domain.image_type(data)
    if content_type is None:
        raise Unprocessable(f"The {kind} must be a JPEG, PNG or WebP image", code="invalid-image")
    if len(data) > limit:
        raise Unprocessable(f"The {kind} is larger than {limit} bytes", code="image-too-large")
    return content_type, data


async def _keep_image(
    session: AsyncSession,
    store: TrackerStore,
    order_id: str,
    kind: str,
    image: tuple[str, bytes],
    now: datetime,
) -> None:
    content_type, data = image
    row = await store.proof_image(order_id, kind)
    if row is None:
        row = ProofImageRow(order_id=order_id, kind=kind)
        session.add(row)
    row.content_type, row.data, row.created_at = content_type, data, now
    row.sha256 = hashlib.sha256(data).hexdigest()


async def _advance(
    session: AsyncSession, store: TrackerStore, route: RouteRow, order_id: str, at: datetime, deps: Deps
) -> None:
    """The engine hears of the completion; a route not yet started starts with it."""
    plan = await plan_of(store, route, deps)
    now = deps.clock.now()
    progress = engine.load(route.progress) if route.progress else Progress.begin(plan)
    step = Step(progress)
    if not progress.started:
        step = engine.start(plan, progress, now, deps.eta)
    done = engine.complete(plan, progress, order_id, at, now, deps.eta)
    step.events += done.events
    await apply(session, store, route, plan, step, deps)


async def _finish_when_done(store: TrackerStore, route: RouteRow, now: datetime) -> None:
    if route.status in ("planned", "started") and all(s.status in DONE for s in await store.stops(route.id)):
        route.status, route.finished_at = "done", now


async def start_route(route_id: str, device: Device, deps: Deps) -> RouteRow:
    """The driver sets off: every stop is out for delivery. Starting a started route changes nothing."""
    async with deps.db.transaction() as session:
        store = TrackerStore(session)
        route = await _drivers_route(store, route_id, device)
        if route.status in ("done", "cancelled"):
            raise Conflict(f"Route {route_id} is {route.status}", code="route-closed")
        if route.status == "planned":
            plan = await plan_of(store, route, deps)
            progress = engine.load(route.progress) if route.progress else Progress.begin(plan)
            step = engine.start(plan, progress, deps.clock.now(), deps.eta)
            await apply(session, store, route, plan, step, deps)
    return route


async def finish_route(route_id: str, device: Device, deps: Deps) -> RouteRow:
    """The driver is done: stops without a result are failed (not attempted), so the planner re-plans them."""
    now = deps.clock.now()
    async with deps.db.transaction() as session:
        store = TrackerStore(session)
        route = await _drivers_route(store, route_id, device)
        if route.status == "cancelled":
            raise Conflict(f"Route {route_id} is cancelled", code="route-closed")
        if route.status == "done":
            return route
        for stop in await store.stops(route.id, lock=True):  # locked in order before any change
            if stop.status in DONE:
                continue
            stop.status, stop.completed_at, stop.failure_reason = "failed", now, "other"
            failed = ev.DeliveryFailed(
                order_id=stop.order_id,
                vehicle_id=route.vehicle_id,
                at=now,
                reason="other",
                note=NOT_ATTEMPTED,
            )
            outbox.add(session, failed, source=SOURCE)
        route.status, route.finished_at = "done", now
        route.started_at = route.started_at or now
    return route


async def _drivers_route(store: TrackerStore, route_id: str, device: Device) -> RouteRow:
    route = await store.route(route_id, lock=True)
    if route is None or route.vehicle_id != device.vehicle_id:
        raise NotFound(f"Route {route_id} is not this vehicle's")
    return route


async def proof_image(order_id: str, kind: str, deps: Deps) -> ProofImageRow:
    async with deps.db.read() as session:
        row = await TrackerStore(session).proof_image(order_id, kind)
    if row is None:
        raise NotFound(f"No {kind} for {order_id}")
    return row
