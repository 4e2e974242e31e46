"""Order rules: which fields fit together, which depot serves an order, what a service level promises, what
may change when, and how the status follows deliveries. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.common import events as ev
from lastmile.common.errors import Conflict, FieldProblem, LastmileError
from lastmile.order_intake.schemas import (
    ChangeOrder,
    CreateOrder,
    DestinationIn,
    RecipientIn,
    ServiceLevel,
    TimeWindowIn,
)

# A same-day order needs at least this much of the depot's day left, else it is refused (not silently late).
SAME_DAY_MIN_WINDOW = timedelta(hours=2)
LONGEST_WINDOW = timedelta(days=7)
CHANGEABLE = frozenset({"received", "scheduled", "unassigned"})  # before the order is out for delivery


class InvalidOrder(LastmileError):
    """Rules that span fields; rendered like schema errors, with a pointer per bad field."""

    status, code, title = 422, "validation-error", "Invalid request"

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        super().__init__("The request has invalid fields; see errors.", errors=problems)


class NoDepot(LastmileError):
    status, code, title = 422, "no-depot", "No depot serves this destination"


class NotChangeable(Conflict):
    code, title = "order-not-changeable", "The order can no longer be changed"


# ---------------------------------------------------------------------------------------------------------
# Rules across fields (the schema checks each field alone)


def check_order(cmd: CreateOrder, now: datetime, at: str = "#") -> list[FieldProblem]:
    """Every cross-field problem of a new order, each with its JSON pointer under `at`."""
    problems = _check_when(cmd.time_windows, cmd.service_level, now, at, required=True)
    r = cmd.recipient
    if r.channels is not None:  # (pointers are formatted only for an order that has a problem)
        problems += check_recipient(r, f"{at}/recipient")
    d = cmd.destination
    if (d.location_type == "pickup_point") != (d.pickup_point_id is not None):
        problems += check_destination(d, f"{at}/destination")
    if len(cmd.skills) > 1 and len(set(cmd.skills)) != len(cmd.skills):
        problems.append(FieldProblem(pointer=f"{at}/skills", detail="skills are listed more than once"))
    if cmd.ready_at is not None and cmd.time_windows and cmd.ready_at >= max(w.end for w in cmd.time_windows):
        problems.append(FieldProblem(pointer=f"{at}/ready_at", detail="must be before the last window ends"))
    return problems


def check_change(cmd: ChangeOrder, now: datetime) -> list[FieldProblem]:
    if all(value is None for _, value in cmd):
        detail = "give at least one of time_windows, service_level, destination, recipient"
        return [FieldProblem(pointer="#", detail=detail)]
    problems = _check_when(cmd.time_windows, cmd.service_level, now, "#", required=False)
    if cmd.recipient is not None:
        problems += check_recipient(cmd.recipient, "#/recipient")
    if cmd.destination is not None:
        problems += check_destination(cmd.destination, "#/destination")
    return problems


def _check_when(
    windows: list[TimeWindowIn] | None, level: ServiceLevel | None, now: datetime, at: str, *, required: bool
) -> list[FieldProblem]:
    if windows and level:
        return [
            FieldProblem(
                pointer=f"{at}/service_level", detail="give time_windows or a service_level, not both"
            )
        ]
    if required and not windows and not level:
        return [FieldProblem(pointer=f"{at}/time_windows", detail="give time_windows or a service_level")]
    problems = []
    for i, w in enumerate(windows or ()):
        if w.end <= w.start:
            problems.append(FieldProblem(pointer=f"{at}/time_windows/{i}/end", detail="must be after start"))
        elif w.end <= now:
            problems.append(FieldProblem(pointer=f"{at}/time_windows/{i}/end", detail="is in the past"))
        elif w.end - w.start > LONGEST_WINDOW:
            problems.append(FieldProblem(pointer=f"{at}/time_windows/{i}", detail="is longer than 7 days"))
        if i and w.start < windows[i - 1].end:  # type: ignore[index]
            problems.append(
                FieldProblem(
                    pointer=f"{at}/time_windows/{i}/start",
                    detail="must not begin before the previous window ends",
                )
            )
    return problems


def check_recipient(r: RecipientIn, at: str) -> list[FieldProblem]:
    problems = []
    if r.channels is not None:
        if len(set(r.channels)) != len(r.channels):
            problems.append(
                FieldProblem(pointer=f"{at}/channels", detail="channels are listed more than once")
            )
        if "sms" in r.channels and r.phone is None:
            problems.append(FieldProblem(pointer=f"{at}/phone", detail="required when channels include sms"))
        if "email" in r.channels and r.email is None:
            problems.append(
                FieldProblem(pointer=f"{at}/email", detail="required when channels include email")
            )
    return problems


def check_destination(d: DestinationIn, at: str) -> list[FieldProblem]:
    if d.location_type == "pickup_point" and d.pickup_point_id is None:
        return [
            FieldProblem(
                pointer=f"{at}/pickup_point_id", detail="required when location_type is pickup_point"
            )
        ]
    if d.location_type != "pickup_point" and d.pickup_point_id is not None:
        return [FieldProblem(pointer=f"{at}/pickup_point_id", detail="only for location_type pickup_point")]
    return []


# ---------------------------------------------------------------------------------------------------------
# Depots (a copy of the planner's, from depots.v1)


@dataclass(frozen=True)
class Depot:
    id: str
    name: str
    lat: float
    lon: float
    timezone: str
    service_radius_km: float
    active: bool = True
    service_area: tuple[tuple[float, float], ...] | None = None  # (lat, lon) polygon
    opens: str = "07:00"
    closes: str = "21:00"

    def serves(self, lat: float, lon: float) -> bool:
        if self.service_area:
            return inside(self.service_area, lat, lon)
        return distance_km(self.lat, self.lon, lat, lon) <= self.service_radius_km


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(min(1.0, a)))


def inside(polygon: Sequence[tuple[float, float]], lat: float, lon: float) -> bool:
    """Ray casting on (lat, lon) pairs; fine at city scale, where the plane approximates the sphere."""
    hit = False
    j = len(polygon) - 1
    for i, (yi, xi) in enumerate(polygon):
        yj, xj = polygon[j]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


def choose_depot(depots: Sequence[Depot], lat: float, lon: float, requested: str | None) -> Depot:
    """The requested depot, else the nearest active depot whose service area holds the destination."""
    if requested is not None:
        for d in depots:
            if d.id == requested and d.active:
                return d
        raise NoDepot(f"Depot {requested!r} is unknown or inactive")
    best: Depot | None = None
    nearest = math.inf
    for d in depots:
        if not d.active:
            continue
        km = distance_km(d.lat, d.lon, lat, lon)
        if km < nearest and (
            inside(d.service_area, lat, lon) if d.service_area else km <= d.service_radius_km
        ):
            best, nearest = d, km
    if best is None:
        raise NoDepot(f"No depot's service area holds ({lat:.5f}, {lon:.5f})")
    return best


# ---------------------------------------------------------------------------------------------------------
# Service levels


def service_window(
    level: ServiceLevel, depot: Depot, now: datetime, ready_at: datetime | None, at: str = "#"
) -> ev.TimeWindow:
    """The window a service level promises: the depot's opening hours, today or tomorrow, in its timezone."""
    tz = ZoneInfo(depot.timezone)
    today = now.astimezone(tz).date()
    day = today if level == "same_day" else today + timedelta(days=1)
    opens, closes = _at(day, depot.opens, tz), _at(day, depot.closes, tz)
    start = max(opens, now.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1))
    if ready_at is not None:
        start = max(start, ready_at.astimezone(tz))
    if closes - start < SAME_DAY_MIN_WINDOW:
        detail = f"{level} is not possible: depot {depot.id} closes at {depot.closes} ({depot.timezone})" + (
            " and the parcel is ready too late" if ready_at is not None else ""
        )
        raise InvalidOrder([FieldProblem(pointer=f"{at}/service_level", detail=detail)])
    return ev.TimeWindow(start=start, end=closes)


def _at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tz)


def windows_for(
    windows: list[TimeWindowIn] | None,
    level: ServiceLevel | None,
    depot: Depot,
    now: datetime,
    ready_at: datetime | None,
    at: str = "#",
) -> list[ev.TimeWindow]:
    if level is not None:
        return [service_window(level, depot, now, ready_at, at)]
    assert windows, "check_order guarantees windows or a service level"
    return [ev.TimeWindow(start=w.start, end=w.end) for w in windows]


# ---------------------------------------------------------------------------------------------------------
# Orders


def channels_of(r: RecipientIn) -> list[ev.Channel]:
    if r.channels is not None:
        return list(r.channels)
    contacts: tuple[tuple[ev.Channel, str | None], ...] = (("sms", r.phone), ("email", r.email))
    return [channel for channel, contact in contacts if contact]  # every channel they gave a contact for


def recipient(r: RecipientIn, depot: Depot) -> ev.Recipient:
    return ev.Recipient(
        name=r.name,
        phone=r.phone,
        email=r.email,
        language=r.language,
        channels=channels_of(r),
        timezone=depot.timezone,
    )


def destination(d: DestinationIn) -> ev.Destination:
    return ev.Destination(**{name: getattr(d, name) for name in DESTINATION_FIELDS})


DESTINATION_FIELDS = tuple(ev.Destination.model_fields)


def new_order(
    cmd: CreateOrder,
    *,
    order_id: str,
    merchant_id: str,
    merchant_name: str,
    depot: Depot,
    tracking_token: str,
    tracking_base_url: str,
    now: datetime,
    at: str = "#",
) -> dict[str, Any]:
    """The accepted order as the data of its `OrderCreated` event, which validates it as is.

    Plain data: every value comes from the validated command or from these rules, and building and then
    serialising an event model per order was a quarter of the time of accepting a batch. The command's
    destination, parcels and windows have the event's fields (a unit test checks it), so their models' field
    dicts go in as they are (shared, not copied: the data is serialised and dropped).
    """
    r = cmd.recipient
    if cmd.service_level is not None:
        windows = [service_window(cmd.service_level, depot, now, cmd.ready_at, at).__dict__]
    else:
        assert cmd.time_windows, "check_order guarantees windows or a service level"
        windows = [w.__dict__ for w in cmd.time_windows]
    return {
        "order_id": order_id,
        "version": 1,
        "merchant_id": merchant_id,
        "merchant_name": merchant_name,
        "reference": cmd.reference,
        "kind": cmd.kind,
        "depot_id": depot.id,
        "recipient": {
            "name": r.name,
            "phone": r.phone,
            "email": r.email,
            "language": r.language,
            "channels": channels_of(r),
            "timezone": depot.timezone,
        },
        "destination": cmd.destination.__dict__,
        "time_windows": windows,
        "parcels": [p.__dict__ for p in cmd.parcels],
        "service_time_s": cmd.service_time_s,
        "priority": cmd.priority,
        "skills": cmd.skills,
        "ready_at": cmd.ready_at,
        "tracking_token": tracking_token,
        "tracking_url": tracking_base_url + tracking_token,
        "created_at": now,
    }


def change_order(
    current: ev.OrderSnapshot, status: str, cmd: ChangeOrder, depot: Depot, now: datetime
) -> ev.OrderUpdated:
    """The order after the change, one version on; only before it is out for delivery."""
    if status not in CHANGEABLE:
        raise NotChangeable(f"The order is {status}; changes are accepted until it is out for delivery")
    fields = current.model_dump()
    changed: list[str] = []
    if cmd.destination is not None:
        if not depot.serves(cmd.destination.lat, cmd.destination.lon):
            raise InvalidOrder(
                [
                    FieldProblem(
                        pointer="#/destination",
                        detail=f"outside the service area of depot {depot.id}; cancel and create a new order",
                    )
                ]
            )
        fields["destination"], changed = destination(cmd.destination), [*changed, "destination"]
    if cmd.recipient is not None:
        fields["recipient"], changed = recipient(cmd.recipient, depot), [*changed, "recipient"]
    if cmd.time_windows is not None or cmd.service_level is not None:
        fields["time_windows"] = windows_for(
            cmd.time_windows, cmd.service_level, depot, now, current.ready_at
        )
        changed.append("time_windows")
    fields["version"] = current.version + 1
    return ev.OrderUpdated(**fields, changed=changed)


def cancel_order(
    current: ev.OrderSnapshot, status: str, reason: str | None, now: datetime
) -> ev.OrderCancelled:
    if status not in CHANGEABLE:
        raise NotChangeable(
            f"The order is {status}; it can be cancelled until it is out for delivery",
            code="order-not-cancellable",
            title="The order can no longer be cancelled",
        )
    return ev.OrderCancelled(
        order_id=current.order_id,
        version=current.version + 1,
        merchant_id=current.merchant_id,
        depot_id=current.depot_id,
        reason=reason,
        cancelled_at=now,
    )


# Status an order takes when a deliveries.v1 event arrives; None keeps the current status.
STATUS_BY_EVENT: dict[type[ev.Payload], str] = {
    ev.DeliveryScheduled: "scheduled",
    ev.DeliveryUnassigned: "unassigned",
    ev.OutForDelivery: "out_for_delivery",
    ev.Arrived: "arriving",
    ev.Delivered: "delivered",
    ev.DeliveryFailed: "failed",
}
FINAL = {"delivered", "cancelled"}


def moves_status(payload: ev.Payload) -> bool:
    """Whether the event can move any order's status (`status_after`): an ETA change only when it says the
    vehicle arrives soon."""
    return not isinstance(payload, ev.EtaChanged) or payload.arriving_soon


def status_after(current: str, payload: ev.Payload) -> str | None:
    """The order's next status, or None when the event does not move it (or would move it backwards)."""
    if current in FINAL:
        return None
    if isinstance(payload, ev.EtaChanged):
        return "arriving" if payload.arriving_soon and current == "out_for_delivery" else None
    new = STATUS_BY_EVENT.get(type(payload))
    if new is None or new == current:
        return None
    if new in ("scheduled", "unassigned") and current in ("out_for_delivery", "arriving", "failed"):
        # A late re-plan notice must not undo a route that is already being driven, nor a failed attempt: the
        # planner never re-plans a failed job, so such a notice comes from a plan made before it heard of the
        # failure (the driver's result and the plan cross on deliveries.v1).
        return None
    return new


# What a merchant may read of each delivery event in the order's history (never the driver's position).
DETAIL_FIELDS = {
    ev.DeliveryScheduled: ("planned_arrival", "promised_window", "service_date"),
    ev.DeliveryUnassigned: ("reason", "detail"),
    ev.OutForDelivery: ("eta",),
    ev.EtaChanged: ("eta",),
    ev.Arrived: ("at",),
    ev.Delivered: ("at",),
    ev.DeliveryFailed: ("at", "reason", "note"),
}


def status_detail(payload: ev.Payload) -> dict[str, Any]:
    """The parts of the event that explain the status: the promise, the reason an order was left out, …"""
    data = payload.model_dump(mode="json", include=set(DETAIL_FIELDS.get(type(payload), ())))
    return {k: v for k, v in data.items() if v is not None}
