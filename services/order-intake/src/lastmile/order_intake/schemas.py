"""What merchants send and receive: commands (unknown fields are an error) and views, with their examples."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SkipValidation,
    WithJsonSchema,
)

from lastmile.common import events as ev
from lastmile.common.errors import Problem

E164 = r"^\+[1-9]\d{6,14}$"
EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"
SKILL = r"^[a-z][a-z0-9_]{0,39}$"
REFERENCE = r"^[\x21-\x7e]([\x20-\x7e]{0,98}[\x21-\x7e])?$"  # printable ASCII, no edge spaces
MAX_BATCH = 1000

ServiceLevel = Literal["same_day", "next_day"]
OrderStatus = Literal[
    "received", "scheduled", "unassigned", "out_for_delivery", "arriving", "delivered", "failed", "cancelled"
]


def _metadata_value(value: Any) -> Any:
    """One clear error per bad value (a union would report one per member it tried)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        if len(value) > 500:
            raise ValueError("must be at most 500 characters")
        return value
    raise ValueError("must be a string, a number, a boolean or null")


MetadataValue = Annotated[
    Any,
    PlainValidator(_metadata_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": 500},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------------------
# Commands


class RecipientIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: Annotated[str | None, Field(pattern=E164, description="E.164, e.g. +447700900123")] = None
    email: Annotated[str | None, Field(max_length=254, pattern=EMAIL)] = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$", description="BCP 47, e.g. de-DE")] = (
        "en"
    )
    channels: list[ev.Channel] | None = Field(
        default=None,
        max_length=2,
        description="Channels the recipient accepts; default: every channel they gave a contact for",
    )


class DestinationIn(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    address_lines: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=5
    )
    postal_code: Annotated[str | None, Field(min_length=1, max_length=20)] = None
    city: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    country: Annotated[str | None, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")] = None
    location_type: ev.LocationType = "home"
    pickup_point_id: Annotated[
        str | None, Field(min_length=1, max_length=100, description="Required for `pickup_point`")
    ] = None
    access_notes: Annotated[str | None, Field(max_length=500)] = None


class TimeWindowIn(Strict):
    start: AwareDatetime
    end: AwareDatetime


class ParcelIn(Strict):
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    weight_kg: Annotated[float, Field(ge=0, le=1000)] = 0.0
    volume_l: Annotated[float, Field(ge=0, le=10000)] = 0.0


class CreateOrder(Strict):
    """One order. Give `time_windows` or a `service_level`, not both."""

    reference: Annotated[
        str, Field(pattern=REFERENCE, max_length=100, description="Your own reference, unique per merchant")
    ]
    kind: ev.OrderKind = Field(default="delivery", description="`return`: we pick the parcel up")
    depot_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=40,
            description="Default: the nearest depot whose service area holds the destination",
        ),
    ] = None
    recipient: RecipientIn
    destination: DestinationIn
    time_windows: list[TimeWindowIn] | None = Field(default=None, min_length=1, max_length=10)
    service_level: ServiceLevel | None = Field(
        default=None, description="Becomes a window in the depot's timezone and opening hours"
    )
    parcels: list[ParcelIn] = Field(default_factory=lambda: [ParcelIn()], min_length=1, max_length=100)
    service_time_s: Annotated[int, Field(ge=0, le=7200)] = 180
    priority: Annotated[int, Field(ge=0, le=100)] = 0
    skills: list[Annotated[str, Field(pattern=SKILL)]] = Field(
        default_factory=list, max_length=20, examples=[["cold_chain", "id_check", "heavy"]]
    )
    ready_at: AwareDatetime | None = Field(default=None, description="When the warehouse has it packed")
    metadata: dict[Annotated[str, Field(min_length=1, max_length=40)], MetadataValue] = Field(
        default_factory=dict, max_length=50, description="Yours, returned as given"
    )


class ChangeOrder(Strict):
    """Each part given replaces that part of the order; allowed until the order is out for delivery."""

    time_windows: list[TimeWindowIn] | None = Field(default=None, min_length=1, max_length=10)
    service_level: ServiceLevel | None = None
    destination: DestinationIn | None = None
    recipient: RecipientIn | None = None


class CancelOrder(Strict):
    reason: Annotated[str | None, Field(max_length=200)] = None


class CreateOrderBatch(Strict):
    """Up to 1,000 orders; each is accepted or rejected on its own."""

    # Items are validated one by one (in handlers), so that one bad order does not reject the others.
    orders: list[SkipValidation[CreateOrder]] = Field(min_length=1, max_length=MAX_BATCH)


class ValidBatch(Strict):
    """The same batch when every order in it is valid: validated in one pass straight from the JSON bytes."""

    orders: list[CreateOrder] = Field(min_length=1, max_length=MAX_BATCH)


class CreateMerchant(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["Acme Books"])]


class CreateKey(Strict):
    label: Annotated[str, Field(max_length=100)] = ""


# ---------------------------------------------------------------------------------------------------------
# Views


class OrderView(BaseModel):
    id: str
    reference: str
    kind: ev.OrderKind
    status: OrderStatus
    version: int
    depot_id: str
    recipient: ev.Recipient
    destination: ev.Destination
    time_windows: list[ev.TimeWindow]
    service_level: ServiceLevel | None = None
    parcels: list[ev.Parcel]
    service_time_s: int
    priority: int
    skills: list[str]
    ready_at: datetime | None = None
    metadata: dict[str, Any]
    tracking_url: str
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class StatusView(BaseModel):
    status: str
    at: datetime
    detail: dict[str, Any]


class TrackingView(BaseModel):
    order_id: str
    tracking_url: str = Field(description="The customer's tracking page; share it with the recipient")


class BatchItem(BaseModel):
    index: int
    reference: str | None = None
    outcome: Literal["created", "rejected"]
    id: str | None = None
    tracking_url: str | None = None
    problem: Problem | None = Field(default=None, description="Why it was rejected; pointers into the batch")


class BatchResult(BaseModel):
    created: int
    rejected: int
    items: list[BatchItem]


class MerchantCreated(BaseModel):
    id: str
    name: str
    api_key_id: str
    api_key: str = Field(description="Shown once; only its hash is stored")


class KeyCreated(BaseModel):
    id: str
    api_key: str = Field(description="Shown once; only its hash is stored")
