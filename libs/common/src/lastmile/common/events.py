"""The event contract: the CloudEvents-shaped envelope, every topic, every payload and the type registry.

Fields are only ever added, never renamed or removed (docs/events/ holds the committed schemas and a test
guards them). Consumers ignore fields they do not know, so producers can add fields first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from json.encoder import encode_basestring
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# ---------------------------------------------------------------------------------------------------------
# Topics


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic's name carries its major version; `key` names the payload field that is the message key."""

    name: str
    key: str

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


ORDERS = Topic("orders.v1", key="depot_id")
DEPOTS = Topic("depots.v1", key="depot_id")
ROUTES = Topic("routes.v1", key="vehicle_id")
LOCATIONS = Topic("locations.v1", key="vehicle_id")
DELIVERIES = Topic("deliveries.v1", key="order_id")
NOTIFICATIONS = Topic("notifications.v1", key="order_id")
MERCHANTS = Topic("merchants.v1", key="merchant_id")
DEVICES = Topic("devices.v1", key="vehicle_id")

TOPICS: tuple[Topic, ...] = (ORDERS, DEPOTS, ROUTES, LOCATIONS, DELIVERIES, NOTIFICATIONS, MERCHANTS, DEVICES)

# ---------------------------------------------------------------------------------------------------------
# Envelope


class Envelope(BaseModel):
    """CloudEvents 1.0 structured JSON. `id` is the idempotency key of the event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    type: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    def payload(self) -> Payload:
        """The typed payload; raises UnknownEventType or pydantic's ValidationError."""
        model = EVENT_TYPES.get(self.type)
        if model is None:
            raise UnknownEventType(self.type)
        return model.model_validate(self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


class UnknownEventType(ValueError):
    def __init__(self, type_: str) -> None:
        super().__init__(f"unknown event type {type_!r}")
        self.type = type_


class Payload(BaseModel):
    """Base of every event payload: `TYPE` is the CloudEvents type, `TOPIC` where it travels."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    TOPIC: ClassVar[Topic]

    def key(self) -> str:
        return str(getattr(self, self.TOPIC.key))

    def envelope(self, source: str, *, time: datetime | None = None, id: uuid.UUID | None = None) -> Envelope:
        return Envelope(
            id=id or uuid.uuid4(),
            type=self.TYPE,
            source=source,
            subject=self.subject(),
            time=time or datetime.now(UTC),
            data=self.model_dump(mode="json"),
        )

    def serialised(
        self,
        source: str,
        data_json: str | None = None,
        *,
        time: datetime | None = None,
        id: uuid.UUID | None = None,
    ) -> SerialisedEnvelope:
        """What `envelope(source).to_bytes()` gives, built without a model per event, reusing the payload's JSON
        when the caller already has it: for producers of many events (order intake's batches)."""
        data = self.model_dump_json() if data_json is None else data_json
        return serialise(type(self), self.subject(), source, data, time=time, id=id)

    def subject(self) -> str:
        """The entity the event is about; the order for most events."""
        # __dict__, not getattr: a missing attribute costs pydantic an exception, on every event of some topics
        return str(self.__dict__.get("order_id") or self.key())


@dataclass(frozen=True, slots=True)
class SerialisedEnvelope:
    """An envelope already in its wire form; the outbox takes it like an Envelope."""

    id: uuid.UUID | str  # the text form, as str(uuid) gives it, from `EnvelopeWriter`
    type: str
    raw: bytes

    def to_bytes(self) -> bytes:
        return self.raw


def serialise(
    payload_type: type[Payload],
    subject: str,
    source: str,
    data_json: str,
    *,
    time: datetime | None = None,
    id: uuid.UUID | None = None,
) -> SerialisedEnvelope:
    """An envelope's wire bytes around a payload already serialised to JSON (which must validate as
    `payload_type`): the same bytes as `Envelope.to_bytes()`, without building a model per event."""
    return EnvelopeWriter(payload_type, source, time)(subject, data_json, id)


class EnvelopeWriter:
    """`serialise` for many events of one type, source and time (a batch's): what they share is formatted once.
    Ids may be given as text (`ids.uuid4_strings`), which is cheaper than `uuid.UUID` objects."""

    __slots__ = ("_end", "_middle", "type")

    def __init__(self, payload_type: type[Payload], source: str, time: datetime | None = None) -> None:
        at = (time or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
        quote = encode_basestring  # JSON string quoting, non-ASCII kept as is (like pydantic)
        self.type = payload_type.TYPE
        self._middle = f'","type":{quote(self.type)},"source":{quote(source)},"subject":'
        self._end = f',"time":"{at}","datacontenttype":"application/json","data":'

    def __call__(self, subject: str, data_json: str, id: uuid.UUID | str | None = None) -> SerialisedEnvelope:
        id = id or uuid.uuid4()
        raw = f'{{"specversion":"1.0","id":"{id}{self._middle}{encode_basestring(subject)}{self._end}{data_json}}}'
        return SerialisedEnvelope(id, self.type, raw.encode())


EVENT_TYPES: dict[str, type[Payload]] = {}


def event(type_: str, topic: Topic) -> Any:
    """Class decorator: registers a payload model under its CloudEvents type."""

    def register(cls: type[Payload]) -> type[Payload]:
        if type_ in EVENT_TYPES:
            raise ValueError(f"event type {type_} registered twice")
        cls.TYPE = type_
        cls.TOPIC = topic
        EVENT_TYPES[type_] = cls
        return cls

    return register


def decode(raw: bytes) -> tuple[Envelope, Payload]:
    """Envelope and typed payload from the wire; raises on anything a consumer must dead-letter."""
    envelope = Envelope.from_bytes(raw)
    return envelope, envelope.payload()


# ---------------------------------------------------------------------------------------------------------
# Value types shared by payloads

Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Channel = Literal["sms", "email"]
ALL_CHANNELS: tuple[Channel, ...] = ("sms", "email")
OrderKind = Literal["delivery", "return"]
LocationType = Literal["home", "office", "pickup_point"]
FailureReason = Literal["not_at_home", "address_not_found", "refused", "damaged", "access_denied", "other"]


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GeoPoint(Value):
    lat: Latitude
    lon: Longitude


class TimeWindow(Value):
    start: AwareDatetime
    end: AwareDatetime


class Recipient(Value):
    name: str
    phone: str | None = None
    email: str | None = None
    language: str = "en"
    channels: list[Channel] = Field(default_factory=lambda: list(ALL_CHANNELS))
    timezone: str | None = None


class Destination(Value):
    lat: Latitude
    lon: Longitude
    address_lines: list[str] = Field(default_factory=list)
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None
    location_type: LocationType = "home"
    pickup_point_id: str | None = None
    access_notes: str | None = None


class Parcel(Value):
    count: int = 1
    weight_kg: float = 0.0
    volume_l: float = 0.0


# ---------------------------------------------------------------------------------------------------------
# orders.v1 (key: depot id)


class OrderSnapshot(Payload):
    """The whole order as order-intake knows it; created and updated events carry all of it."""

    order_id: str
    version: int = 1
    merchant_id: str
    merchant_name: str = ""
    reference: str
    kind: OrderKind = "delivery"
    depot_id: str
    recipient: Recipient
    destination: Destination
    time_windows: list[TimeWindow]
    parcels: list[Parcel] = Field(default_factory=list)
    service_time_s: int = 180
    priority: int = 0
    skills: list[str] = Field(default_factory=list)
    ready_at: AwareDatetime | None = None
    tracking_token: str
    tracking_url: str
    created_at: AwareDatetime


@event("lastmile.order.created", ORDERS)
class OrderCreated(OrderSnapshot):
    pass


@event("lastmile.order.updated", ORDERS)
class OrderUpdated(OrderSnapshot):
    changed: list[str] = Field(default_factory=list)


@event("lastmile.order.cancelled", ORDERS)
class OrderCancelled(Payload):
    order_id: str
    version: int
    merchant_id: str
    depot_id: str
    reason: str | None = None
    cancelled_at: AwareDatetime


# ---------------------------------------------------------------------------------------------------------
# depots.v1 (key: depot id) — the planner owns depots; order-intake keeps a copy to pick an order's depot.


@event("lastmile.depot.upserted", DEPOTS)
class DepotUpserted(Payload):
    depot_id: str
    name: str
    location: GeoPoint
    timezone: str
    service_radius_km: float
    service_area: list[GeoPoint] | None = None
    opens: str = "07:00"
    closes: str = "21:00"
    active: bool = True


# ---------------------------------------------------------------------------------------------------------
# merchants.v1 (key: merchant id) — order intake owns merchants and their API keys; services with merchant
# routes of their own (the notifier's webhooks) keep a copy of the active key hashes to authenticate them.


@event("lastmile.merchant.keys_changed", MERCHANTS)
class MerchantKeysChanged(Payload):
    """The merchant's whole set of active API key hashes (SHA-256 hex) after a change: last one wins."""

    merchant_id: str
    name: str
    key_hashes: list[str]
    version: int
    at: AwareDatetime


# ---------------------------------------------------------------------------------------------------------
# devices.v1 (key: vehicle id) — the tracker owns drivers' devices and their keys; the planner keeps a copy to
# serve a driver their route.


@event("lastmile.device.upserted", DEVICES)
class DeviceUpserted(Payload):
    device_id: str
    vehicle_id: str
    key_hash: str
    active: bool
    at: AwareDatetime


# ---------------------------------------------------------------------------------------------------------
# routes.v1 (key: vehicle id)


class RouteStop(Value):
    stop_id: str
    order_id: str
    kind: Literal["delivery", "pickup"] = "delivery"
    sequence: int
    location: GeoPoint
    planned_arrival: AwareDatetime
    planned_departure: AwareDatetime
    service_s: int
    promised_window: TimeWindow | None = None
    leg_distance_m: int = 0
    leg_duration_s: int = 0
    lateness_s: int = 0
    trip: int = 1  # a vehicle that comes back to the depot to reload starts trip 2, and so on


class RouteSnapshot(Payload):
    route_id: str
    version: int
    vehicle_id: str
    depot_id: str
    plan_id: str
    service_date: date
    start: GeoPoint
    end: GeoPoint
    start_at: AwareDatetime
    end_at: AwareDatetime
    distance_m: int
    duration_s: int
    stops: list[RouteStop]


@event("lastmile.route.planned", ROUTES)
class RoutePlanned(RouteSnapshot):
    pass


@event("lastmile.route.revised", ROUTES)
class RouteRevised(RouteSnapshot):
    reason: str = ""
    stops_moved: int = 0


@event("lastmile.route.cancelled", ROUTES)
class RouteCancelled(Payload):
    route_id: str
    version: int
    vehicle_id: str
    reason: str = ""


# ---------------------------------------------------------------------------------------------------------
# locations.v1 (key: vehicle id)


@event("lastmile.location.reported", LOCATIONS)
class LocationReported(Payload):
    vehicle_id: str
    device_id: str
    lat: Latitude
    lon: Longitude
    recorded_at: AwareDatetime
    received_at: AwareDatetime
    speed_mps: float | None = None
    heading: float | None = None
    accuracy_m: float | None = None
    battery: float | None = None
    suspect: bool = False
    altitude_m: float | None = None


# ---------------------------------------------------------------------------------------------------------
# deliveries.v1 (key: order id)


@event("lastmile.delivery.scheduled", DELIVERIES)
class DeliveryScheduled(Payload):
    order_id: str
    depot_id: str
    vehicle_id: str
    route_id: str
    route_version: int
    planned_arrival: AwareDatetime
    promised_window: TimeWindow
    service_date: date
    lateness_s: int = 0  # planned arrival after the end of the promised window (a re-plan could not keep it)


@event("lastmile.delivery.unassigned", DELIVERIES)
class DeliveryUnassigned(Payload):
    order_id: str
    depot_id: str
    reason: str
    detail: str = ""


@event("lastmile.delivery.out_for_delivery", DELIVERIES)
class OutForDelivery(Payload):
    order_id: str
    vehicle_id: str
    route_id: str
    eta: AwareDatetime | None = None
    at: AwareDatetime


@event("lastmile.delivery.eta_changed", DELIVERIES)
class EtaChanged(Payload):
    order_id: str
    vehicle_id: str
    eta: AwareDatetime
    previous_eta: AwareDatetime | None = None
    stops_before: int = 0
    arriving_soon: bool = False
    at: AwareDatetime
    position_at: AwareDatetime | None = None  # when the position this ETA was computed from was recorded


@event("lastmile.delivery.arrived", DELIVERIES)
class Arrived(Payload):
    order_id: str
    vehicle_id: str
    at: AwareDatetime
    location: GeoPoint | None = None


class Proof(Value):
    recipient_name: str | None = None
    photo: bool = False
    signature: bool = False
    location: GeoPoint | None = None


@event("lastmile.delivery.delivered", DELIVERIES)
class Delivered(Payload):
    order_id: str
    vehicle_id: str
    at: AwareDatetime
    proof: Proof = Field(default_factory=Proof)


@event("lastmile.delivery.failed", DELIVERIES)
class DeliveryFailed(Payload):
    order_id: str
    vehicle_id: str
    at: AwareDatetime
    reason: FailureReason
    note: str | None = None


@event("lastmile.delivery.delayed", DELIVERIES)
class DeliveryDelayed(Payload):
    order_id: str
    vehicle_id: str
    route_id: str
    delay_s: int
    eta: AwareDatetime
    at: AwareDatetime


# ---------------------------------------------------------------------------------------------------------
# notifications.v1 (key: order id)


@event("lastmile.notification.sent", NOTIFICATIONS)
class NotificationSent(Payload):
    notification_id: str
    order_id: str
    channel: str
    kind: str
    provider_id: str | None = None
    at: AwareDatetime


@event("lastmile.notification.failed", NOTIFICATIONS)
class NotificationFailed(Payload):
    notification_id: str
    order_id: str
    channel: str
    kind: str
    error: str
    at: AwareDatetime


@event("lastmile.webhook.delivered", NOTIFICATIONS)
class WebhookDelivered(Payload):
    order_id: str
    merchant_id: str
    subscription_id: str
    event_id: str
    status_code: int
    at: AwareDatetime


@event("lastmile.webhook.failed", NOTIFICATIONS)
class WebhookFailed(Payload):
    order_id: str
    merchant_id: str
    subscription_id: str
    event_id: str
    error: str
    at: AwareDatetime
