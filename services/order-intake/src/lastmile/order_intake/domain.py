"""Order rules: what a valid order is, which depot serves it, and how its status follows deliveries. No I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from lastmile.common import events as ev
from lastmile.common.errors import LastmileError

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")

# ---------------------------------------------------------------------------------------------------------
# Commands (what merchants send). Unknown fields are an error, not ignored.


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RecipientIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: str | None = Field(default=None, description="E.164, e.g. +447700900123")
    email: str | None = Field(default=None, max_length=254)
    language: Literal["en", "de", "fr", "es"] = "en"
    channels: list[ev.Channel] = Field(default_factory=lambda: list(ev.ALL_CHANNELS))

    @field_validator("phone")
    @classmethod
    def _e164(cls, v: str | None) -> str | None:
        if v is not None and not E164.match(v):
            raise ValueError("phone must be in E.164 form, e.g. +447700900123")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL.match(v):
            raise ValueError("email is not a valid address")
        return v


class DestinationIn(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    address_lines: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=5)
    postal_code: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    location_type: ev.LocationType = "home"
    pickup_point_id: str | None = Field(default=None, max_length=100)
    access_notes: str | None = Field(default=None, max_length=500)


class TimeWindowIn(Strict):
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindowIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ParcelIn(Strict):
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    weight_kg: Annotated[float, Field(ge=0, le=1000)] = 0.0
    volume_l: Annotated[float, Field(ge=0, le=10000)] = 0.0


class CreateOrder(Strict):
    reference: Annotated[str, Field(min_length=1, max_length=100)]
    kind: ev.OrderKind = "delivery"
    depot_id: str | None = None
    recipient: RecipientIn
    destination: DestinationIn
    time_windows: list[TimeWindowIn] = Field(min_length=1, max_length=10)
    parcels: list[ParcelIn] = Field(default_factory=lambda: [ParcelIn()], min_length=1, max_length=100)
    service_time_s: Annotated[int, Field(ge=0, le=7200)] = 180
    priority: Annotated[int, Field(ge=0, le=100)] = 0
    skills: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]] = Field(
        default_factory=list, max_length=20
    )
    ready_at: AwareDatetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


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


class NoDepot(LastmileError):
    status, code, title = 422, "no-depot", "No depot serves this destination"


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(min(1.0, a)))


def choose_depot(depots: list[Depot], lat: float, lon: float, requested: str | None) -> Depot:
    """The requested depot, else the nearest active depot whose service area holds the destination."""
    if requested is not None:
        for d in depots:
            if d.id == requested and d.active:
                return d
        raise NoDepot(f"Depot {requested!r} is unknown or inactive")
    serving = [(distance_km(d.lat, d.lon, lat, lon), d) for d in depots if d.active]
    serving = [(km, d) for km, d in serving if km <= d.service_radius_km]
    if not serving:
        raise NoDepot(f"No depot's service area holds ({lat:.5f}, {lon:.5f})")
    return min(serving, key=lambda pair: pair[0])[1]


# ---------------------------------------------------------------------------------------------------------
# Orders


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
) -> ev.OrderCreated:
    """The accepted order, as the snapshot its `orders.v1` event carries."""
    return ev.OrderCreated(
        order_id=order_id,
        version=1,
        merchant_id=merchant_id,
        merchant_name=merchant_name,
        reference=cmd.reference,
        kind=cmd.kind,
        depot_id=depot.id,
        recipient=ev.Recipient(**cmd.recipient.model_dump(), timezone=depot.timezone),
        destination=ev.Destination(**cmd.destination.model_dump()),
        time_windows=[ev.TimeWindow(start=w.start, end=w.end) for w in cmd.time_windows],
        parcels=[ev.Parcel(**p.model_dump()) for p in cmd.parcels],
        service_time_s=cmd.service_time_s,
        priority=cmd.priority,
        skills=cmd.skills,
        ready_at=cmd.ready_at,
        tracking_token=tracking_token,
        tracking_url=tracking_base_url + tracking_token,
        created_at=now,
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


def status_after(current: str, payload: ev.Payload) -> str | None:
    """The order's next status, or None when the event does not move it (or would move it backwards)."""
    if current in FINAL:
        return None
    if isinstance(payload, ev.EtaChanged):
        return "arriving" if payload.arriving_soon and current == "out_for_delivery" else None
    new = STATUS_BY_EVENT.get(type(payload))
    if new is None or new == current:
        return None
    if new in ("scheduled", "unassigned") and current in ("out_for_delivery", "arriving"):
        return None  # a late re-plan notice must not undo a route that is already being driven
    return new
