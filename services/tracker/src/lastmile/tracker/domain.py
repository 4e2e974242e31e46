"""Tracking rules for pings (which are acceptable, which are suspect) and for a stop's outcome. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lastmile.common import events as ev

EARTH_RADIUS_M = 6_371_008.8
KNOT_MPS = 1852 / 3600
REANCHOR_AFTER = 3  # consecutive suspect fixes that agree with each other: the vehicle really is there

# Every ping gets exactly one outcome: accepted (stored, published) or rejected (counted by reason).
ACCEPTED = ("ok", "late", "suspect")
REJECTED = ("invalid", "out_of_range", "no_fix", "future", "too_old", "duplicate")
Outcome = Literal[
    "ok", "late", "suspect", "invalid", "out_of_range", "no_fix", "future", "too_old", "duplicate"
]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def near_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: within 0.1 % of the great circle below a hundred kilometres, and cheaper."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return EARTH_RADIUS_M * math.hypot(x, math.radians(lat2 - lat1))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from the first point to the second, clockwise from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(y, x)) + 360) % 360


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingIn(Strict):
    """One position as a phone reports it; every door (batch route, OsmAnd) turns its input into these."""

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    recorded_at: AwareDatetime
    speed_mps: Annotated[float, Field(ge=0, le=150)] | None = None
    heading: Annotated[float, Field(ge=0, le=360)] | None = None
    accuracy_m: Annotated[float, Field(ge=0, le=100_000)] | None = None
    battery: Annotated[float, Field(ge=0, le=100)] | None = None
    altitude_m: Annotated[float, Field(ge=-1_000, le=20_000)] | None = None


RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number"}


def rejection_for(errors: list[dict[str, object]]) -> Outcome:
    """The reason a ping did not validate: out of range, or malformed."""
    return "out_of_range" if errors and all(e.get("type") in RANGE_ERRORS for e in errors) else "invalid"


@dataclass(frozen=True)
class Limits:
    max_future_skew_s: float = 120.0
    max_age_s: float = 24 * 3600.0
    max_speed_mps: float = 70.0  # 252 km/h: beyond it, a position is a glitch for any delivery vehicle
    max_accuracy_slack_m: float = 200.0


@dataclass(frozen=True, slots=True)
class Fix:
    lat: float
    lon: float
    at: datetime
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class Track:
    """What judging the next ping of a vehicle needs: its latest fix, its latest plausible one, and how many
    suspect fixes in a row agreed with each other."""

    latest: Fix | None = None
    good: Fix | None = None
    streak: int = 0


@dataclass(frozen=True)
class TimeWindow:
    """The times a ping received at one moment may have: not in the future beyond skew, not too old."""

    earliest: datetime
    latest: datetime

    @classmethod
    def around(cls, now: datetime, limits: Limits) -> TimeWindow:
        return cls(
            now - timedelta(seconds=limits.max_age_s), now + timedelta(seconds=limits.max_future_skew_s)
        )

    def judge(self, ping: PingIn) -> Outcome | None:
        """A reason to refuse the ping from its fix and time alone, or None."""
        if ping.lat == 0 and ping.lon == 0:
            return "no_fix"  # what phones send before they have a fix
        if ping.recorded_at > self.latest:
            return "future"
        if ping.recorded_at < self.earliest:
            return "too_old"
        return None


def judge_time(ping: PingIn, now: datetime, limits: Limits) -> Outcome | None:
    """A reason to refuse the ping from its fix and time alone, or None."""
    return TimeWindow.around(now, limits).judge(ping)


def plausible(a: Fix, b: Fix, limits: Limits) -> bool:
    """Could a vehicle have gone from `a` to `b` in the time between? Accuracy gives some slack."""
    slack = min((a.accuracy_m or 0) + (b.accuracy_m or 0), limits.max_accuracy_slack_m)
    moved = near_distance_m(a.lat, a.lon, b.lat, b.lon) - slack
    if moved <= 0:
        return True
    seconds = (b.at - a.at).total_seconds()
    return seconds > 0 and moved / seconds <= limits.max_speed_mps


def classify(track: Track, ping: PingIn, limits: Limits) -> tuple[Outcome, Track]:
    """'late' when not newer than what is known (stored; the live state stays), 'suspect' when reaching it
    from the last plausible fix would take an impossible speed, else 'ok'. Returns the vehicle's new track."""
    fix = Fix(ping.lat, ping.lon, ping.recorded_at, ping.accuracy_m)
    if track.latest is not None and fix.at <= track.latest.at:
        return "late", track
    if track.good is None or plausible(track.good, fix, limits):
        return "ok", Track(latest=fix, good=fix)
    follows = track.latest is not track.good and track.latest is not None
    streak = track.streak + 1 if follows and plausible(track.latest, fix, limits) else 1  # type: ignore[arg-type]
    if streak >= REANCHOR_AFTER:
        return "ok", Track(latest=fix, good=fix)
    return "suspect", replace(track, latest=fix, streak=streak)


def accuracy_weight(accuracy_m: float | None, good_m: float = 25.0) -> float:
    """How much a fix counts: 1 when accurate, less in proportion as its accuracy radius grows."""
    if accuracy_m is None or accuracy_m <= good_m:
        return 1.0
    return max(0.05, good_m / accuracy_m)


# ---------------------------------------------------------------------------------------------------------
# Stop outcomes


ImageType = Literal["image/jpeg", "image/png", "image/webp"]


def image_type(data: bytes) -> ImageType | None:
    """The image's type from its first bytes (never from what the client claims), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ProofImage(Strict):
    content_base64: str = Field(min_length=4, description="The image (JPEG, PNG or WebP), base64-encoded")


class CompleteStop(Strict):
    outcome: Literal["delivered", "failed"]
    recipient_name: str | None = Field(default=None, max_length=200)
    reason: ev.FailureReason | None = None
    note: str | None = Field(default=None, max_length=1000)
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    completed_at: AwareDatetime | None = Field(
        default=None, description="When the driver completed the stop (defaults to when the server hears)"
    )
    photo: ProofImage | None = None
    signature: ProofImage | None = None


def completion_problem(cmd: CompleteStop) -> str | None:
    """What makes a completion incoherent, or None."""
    if cmd.outcome == "failed" and cmd.reason is None:
        return "A failed stop needs a reason"
    if cmd.outcome == "delivered" and cmd.reason is not None:
        return "A delivered stop has no failure reason"
    if (cmd.lat is None) != (cmd.lon is None):
        return "Give both lat and lon, or neither"
    return None


def outcome_event(
    order_id: str, vehicle_id: str, cmd: CompleteStop, at: datetime, *, photo: bool, signature: bool
) -> ev.Payload:
    location = ev.GeoPoint(lat=cmd.lat, lon=cmd.lon) if cmd.lat is not None and cmd.lon is not None else None
    if cmd.outcome == "delivered":
        proof = ev.Proof(
            recipient_name=cmd.recipient_name, photo=photo, signature=signature, location=location
        )
        return ev.Delivered(order_id=order_id, vehicle_id=vehicle_id, at=at, proof=proof)
    return ev.DeliveryFailed(
        order_id=order_id, vehicle_id=vehicle_id, at=at, reason=cmd.reason or "other", note=cmd.note
    )
