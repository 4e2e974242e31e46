"""Tracking rules: which pings are acceptable, and what a stop's outcome means. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lastmile.common import events as ev


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingIn(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    recorded_at: AwareDatetime
    speed_mps: Annotated[float, Field(ge=0, le=100)] | None = None
    heading: Annotated[float, Field(ge=0, le=360)] | None = None
    accuracy_m: Annotated[float, Field(ge=0)] | None = None
    battery: Annotated[float, Field(ge=0, le=100)] | None = None


class CompleteStop(Strict):
    outcome: Literal["delivered", "failed"]
    recipient_name: str | None = Field(default=None, max_length=200)
    reason: ev.FailureReason | None = None
    note: str | None = Field(default=None, max_length=1000)
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = "ok"


def judge_ping(ping: PingIn, now: datetime, *, max_future_skew_s: float, max_age_s: float) -> Verdict:
    """Refuse pings from the future (beyond clock skew) and pings too old to matter."""
    if ping.recorded_at > now + timedelta(seconds=max_future_skew_s):
        return Verdict(False, "future")
    if ping.recorded_at < now - timedelta(seconds=max_age_s):
        return Verdict(False, "too_old")
    return Verdict(True)


def outcome_event(order_id: str, vehicle_id: str, cmd: CompleteStop, at: datetime) -> ev.Payload:
    location = ev.GeoPoint(lat=cmd.lat, lon=cmd.lon) if cmd.lat is not None and cmd.lon is not None else None
    if cmd.outcome == "delivered":
        proof = ev.Proof(recipient_name=cmd.recipient_name, location=location)
        return ev.Delivered(order_id=order_id, vehicle_id=vehicle_id, at=at, proof=proof)
    return ev.DeliveryFailed(
        order_id=order_id, vehicle_id=vehicle_id, at=at, reason=cmd.reason or "other", note=cmd.note
    )
