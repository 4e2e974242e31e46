"""What a customer's tracking page shows of their order, and the geometry of its little map. Pure.

The vehicle appears only when the customer's stop is among the next few, and only as one point relative to the
customer's own address: never its route, never other customers' stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel

from lastmile.tracker.domain import bearing_deg, distance_m

MAP_SIZE = 320
MAP_REACH_PX = 120  # the vehicle is drawn at most this far from the centre (the customer's address)
FRESH_POSITION = timedelta(minutes=15)
STEPS = (
    ("received", "Order received"),
    ("scheduled", "Scheduled"),
    ("out_for_delivery", "Out for delivery"),
    ("arriving", "Arriving soon"),
    ("delivered", "Delivered"),
)
STATUS_LABELS = {
    **dict(STEPS),
    "arrived": "The driver is at your address",
    "failed": "Delivery attempt failed",
    "cancelled": "Cancelled",
}
FAILURES = {
    "not_at_home": "Nobody was at home.",
    "address_not_found": "The driver could not find the address.",
    "refused": "The parcel was refused.",
    "damaged": "The parcel was damaged.",
    "access_denied": "The driver could not get to the address.",
    "other": "The delivery could not be completed.",
}
COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")


class TimelineStep(BaseModel):
    status: str
    label: str
    at: AwareDatetime | None
    reached: bool
    current: bool


class Window(BaseModel):
    start: AwareDatetime
    end: AwareDatetime


class VehicleOnMap(BaseModel):
    recorded_at: AwareDatetime
    distance_m: int
    direction: str
    description: str


class Ring(BaseModel):
    radius: float
    label: str


class Tile(BaseModel):
    href: str
    x: float
    y: float


class MapGeometry(BaseModel):
    """An SVG of MAP_SIZE² with the customer's address at the centre."""

    size: int = MAP_SIZE
    vehicle_x: float | None = None
    vehicle_y: float | None = None
    rings: list[Ring]
    tiles: list[Tile]
    attribution: str | None = None


class TrackingView(BaseModel):
    reference: str
    merchant: str
    status: str
    status_label: str
    timeline: list[TimelineStep]
    promised_window: Window | None
    eta: AwareDatetime | None
    stops_before: int | None
    vehicle: VehicleOnMap | None
    map: MapGeometry
    address: list[str]
    failure: str | None
    completed_at: AwareDatetime | None
    timezone: str | None
    updated_at: AwareDatetime


@dataclass(frozen=True)
class OrderFacts:
    reference: str
    merchant: str
    created_at: datetime
    lat: float
    lon: float
    address: list[str]
    window: tuple[datetime, datetime] | None
    timezone: str | None
    cancelled_at: datetime | None = None


@dataclass(frozen=True)
class StopFacts:
    status: str  # planned | out | arrived | delivered | failed
    scheduled_at: datetime | None
    out_at: datetime | None = None
    arriving_at: datetime | None = None
    arrived_at: datetime | None = None
    completed_at: datetime | None = None
    failure_reason: str | None = None
    promised: tuple[datetime, datetime] | None = None
    eta: datetime | None = None
    stops_before: int | None = None


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    recorded_at: datetime


@dataclass(frozen=True)
class MapSettings:
    stops_shown: int = 3
    tiles_url: str | None = None
    attribution: str | None = None


def status_of(order: OrderFacts, stop: StopFacts | None) -> str:
    if order.cancelled_at is not None and (stop is None or stop.status not in ("delivered", "failed")):
        return "cancelled"
    if stop is None:
        return "received"
    if stop.status == "out":
        return "arriving" if stop.arriving_at else "out_for_delivery"
    return {"planned": "scheduled"}.get(stop.status, stop.status)


def tracking_view(
    order: OrderFacts, stop: StopFacts | None, vehicle: Position | None, now: datetime, settings: MapSettings
) -> TrackingView:
    status = status_of(order, stop)
    live = status in ("out_for_delivery", "arriving", "arrived")
    shown = (
        vehicle
        if live
        and vehicle is not None
        and stop is not None
        and stop.stops_before is not None
        and stop.stops_before < settings.stops_shown
        and now - vehicle.recorded_at <= FRESH_POSITION
        else None
    )
    promised = (stop.promised if stop else None) or order.window
    return TrackingView(
        reference=order.reference,
        merchant=order.merchant,
        status=status,
        status_label=STATUS_LABELS[status],
        timeline=timeline(order, stop, status),
        promised_window=Window(start=promised[0], end=promised[1]) if promised else None,
        eta=stop.eta
        if stop is not None and status in ("scheduled", "out_for_delivery", "arriving")
        else None,
        stops_before=stop.stops_before if stop is not None and live else None,
        vehicle=_vehicle(order, shown),
        map=map_geometry(order.lat, order.lon, shown, settings),
        address=order.address,
        failure=FAILURES.get(stop.failure_reason or "other") if stop and stop.status == "failed" else None,
        completed_at=stop.completed_at if stop else None,
        timezone=order.timezone,
        updated_at=now,
    )


def timeline(order: OrderFacts, stop: StopFacts | None, status: str) -> list[TimelineStep]:
    times: dict[str, datetime | None] = {"received": order.created_at}
    if stop is not None:
        times |= {
            "scheduled": stop.scheduled_at,
            "out_for_delivery": stop.out_at,
            "arriving": stop.arriving_at or stop.arrived_at,
            "delivered": stop.completed_at if stop.status == "delivered" else None,
        }
    steps = list(STEPS)
    if status in ("failed", "cancelled"):
        final = stop.completed_at if status == "failed" and stop else order.cancelled_at
        reached = [s for s in steps if times.get(s[0])]
        steps, times = [*reached, (status, STATUS_LABELS[status])], times | {status: final}
    current = "arriving" if status == "arrived" else status
    order_of = [s for s, _ in steps]
    here = order_of.index(current) if current in order_of else 0
    return [
        TimelineStep(status=s, label=label, at=times.get(s), reached=i <= here, current=s == current)
        for i, (s, label) in enumerate(steps)
    ]


def _vehicle(order: OrderFacts, vehicle: Position | None) -> VehicleOnMap | None:
    if vehicle is None:
        return None
    meters = distance_m(order.lat, order.lon, vehicle.lat, vehicle.lon)
    direction = COMPASS[round(bearing_deg(order.lat, order.lon, vehicle.lat, vehicle.lon) / 45) % 8]
    where = "at your address" if meters < 30 else f"{distance_text(meters)} {direction} of your address"
    return VehicleOnMap(
        recorded_at=vehicle.recorded_at,
        distance_m=round(meters),
        direction=direction,
        description=f"The driver is {where}.",
    )


def distance_text(meters: float) -> str:
    if meters < 1000:
        return f"{round(meters / 10) * 10:.0f} m"
    return f"{meters / 1000:.1f} km"


# ---------------------------------------------------------------------------------------------------------
# The map: web-mercator pixels (so that optional map tiles line up), centred on the customer's address


def world_px(lat: float, lon: float, zoom: float) -> tuple[float, float]:
    scale = 256 * 2**zoom
    sin_lat = min(0.9999, max(-0.9999, math.sin(math.radians(lat))))
    x = (lon + 180) / 360 * scale
    y = (0.5 - math.log((1 + sin_lat) / (1 - sin_lat)) / (4 * math.pi)) * scale
    return x, y


def map_geometry(lat: float, lon: float, vehicle: Position | None, settings: MapSettings) -> MapGeometry:
    zoom = 16.0
    if vehicle is not None:
        cx, cy = world_px(lat, lon, 0)
        vx, vy = world_px(vehicle.lat, vehicle.lon, 0)
        spread = max(abs(vx - cx), abs(vy - cy), 1e-9)
        zoom = min(17.0, max(3.0, math.log2(MAP_REACH_PX / spread)))
    if settings.tiles_url:
        zoom = math.floor(zoom)
    cx, cy = world_px(lat, lon, zoom)
    half = MAP_SIZE / 2
    geometry = MapGeometry(rings=_rings(lat, zoom), tiles=_tiles(cx, cy, int(zoom), settings.tiles_url))
    if settings.tiles_url:
        geometry.attribution = settings.attribution
    if vehicle is not None:
        vx, vy = world_px(vehicle.lat, vehicle.lon, zoom)
        geometry.vehicle_x, geometry.vehicle_y = round(vx - cx + half, 1), round(vy - cy + half, 1)
    return geometry


def _rings(lat: float, zoom: float) -> list[Ring]:
    meters_per_px = 156_543.033_92 * math.cos(math.radians(lat)) / 2**zoom
    rings = []
    for meters in (
        25,
        50,
        100,
        200,
        500,
        1000,
        2000,
        5000,
        10_000,
        20_000,
        50_000,
        100_000,
        200_000,
        500_000,
    ):
        radius = meters / meters_per_px
        if 20 <= radius <= MAP_SIZE / 2 - 8:
            rings.append(Ring(radius=round(radius, 1), label=distance_text(meters)))
    return rings[-3:]


def _tiles(cx: float, cy: float, zoom: int, url: str | None) -> list[Tile]:
    if not url:
        return []
    half, count = MAP_SIZE / 2, 2**zoom
    tiles = []
    for ty in range(math.floor((cy - half) / 256), math.floor((cy + half) / 256) + 1):
        if not 0 <= ty < count:
            continue
        for tx in range(math.floor((cx - half) / 256), math.floor((cx + half) / 256) + 1):
            href = url.replace("{z}", str(zoom)).replace("{x}", str(tx % count)).replace("{y}", str(ty))
            tiles.append(Tile(href=href, x=round(tx * 256 - cx + half, 1), y=round(ty * 256 - cy + half, 1)))
    return tiles
