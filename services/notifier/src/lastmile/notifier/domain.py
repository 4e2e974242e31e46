"""What to tell customers, and when: one policy, tested directly. No I/O, no async.

`decide(event, state, ...)` takes a delivery event and what the notifier knows of the order, and returns the
order's new state, the messages to send (each with the identity that makes it unique in the log and, in quiet
hours, the moment it may go), the messages dropped because they come too late to matter, and the kinds whose
unsent messages a newer event makes moot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lastmile.common import events as ev

SCHEDULED = "scheduled"
OUT_FOR_DELIVERY = "out_for_delivery"
ETA_CHANGED = "eta_changed"
ARRIVING_SOON = "arriving_soon"
DELIVERED = "delivered"
FAILED = "failed"
KINDS = (SCHEDULED, OUT_FOR_DELIVERY, ETA_CHANGED, ARRIVING_SOON, DELIVERED, FAILED)
TIME_CRITICAL = (OUT_FOR_DELIVERY, ETA_CHANGED, ARRIVING_SOON)
FINAL = ("delivered", "cancelled")


@dataclass(frozen=True)
class Policy:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    default_timezone: str = "UTC"
    eta_threshold: timedelta = timedelta(minutes=15)
    eta_cap: int = 3
    stale_after: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class OrderState:
    """What the notifier knows of an order's delivery; kept beside its contact."""

    status: str = "received"
    window_start: datetime | None = None
    window_end: datetime | None = None
    last_eta: datetime | None = None  # the last arrival time the customer was told
    eta_messages: int = 0


@dataclass(frozen=True)
class Facts:
    """What a message says besides the order's contact: the window and the expected arrival."""

    window_start: datetime | None = None
    window_end: datetime | None = None
    eta: datetime | None = None


@dataclass(frozen=True)
class Planned:
    kind: str
    identity: str  # unique per order and channel in the log: redeliveries and replays find it taken
    facts: Facts
    send_after: datetime | None = None  # held by quiet hours until then


@dataclass(frozen=True)
class Dropped:
    kind: str
    reason: str  # "already-delivered", "cancelled", "stale", "cap"


@dataclass(frozen=True)
class Decision:
    state: OrderState
    messages: tuple[Planned, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    supersedes: tuple[str, ...] = field(default=())


def zone(name: str | None, policy: Policy) -> ZoneInfo:
    try:
        return ZoneInfo(name or policy.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(policy.default_timezone)


def decide(event: ev.Payload, state: OrderState, tz: ZoneInfo, now: datetime, policy: Policy) -> Decision:
    match event:
        case ev.OrderCancelled():
            return Decision(replace(state, status="cancelled"), supersedes=KINDS)
        case ev.DeliveryScheduled():
            return _scheduled(event, state, tz, now, policy)
        case ev.OutForDelivery():
            return _out_for_delivery(event, state, tz, now, policy)
        case ev.EtaChanged(eta=eta, at=at, arriving_soon=soon):
            return _eta(eta, at, soon, state, tz, now, policy)
        case ev.DeliveryDelayed(eta=eta, at=at):
            return _eta(eta, at, False, state, tz, now, policy)
        case ev.Delivered():
            return _finished(DELIVERED, "delivered", DELIVERED, state, tz, now, policy)
        case ev.DeliveryFailed(at=at):
            identity = f"{FAILED}:{at.astimezone(tz).date().isoformat()}"
            return _finished(FAILED, "failed", identity, state, tz, now, policy)
    return Decision(state)


def _scheduled(
    event: ev.DeliveryScheduled, state: OrderState, tz: ZoneInfo, now: datetime, policy: Policy
) -> Decision:
    if state.status in FINAL:
        return _drop(state, SCHEDULED, _final_reason(state))
    w = event.promised_window
    new = replace(state, status="scheduled", window_start=w.start, window_end=w.end, last_eta=None)
    if w.end <= now:
        return _drop(new, SCHEDULED, "stale")
    facts = Facts(window_start=w.start, window_end=w.end)
    identity = f"{SCHEDULED}:{_minute(w.start)}"
    return Decision(new, (Planned(SCHEDULED, identity, facts, _hold(now, w.start, tz, policy)),))


def _out_for_delivery(
    event: ev.OutForDelivery, state: OrderState, tz: ZoneInfo, now: datetime, policy: Policy
) -> Decision:
    if state.status in FINAL:
        return _drop(state, OUT_FOR_DELIVERY, _final_reason(state))
    new = replace(state, status="out_for_delivery", last_eta=event.eta or state.last_eta)
    if now - event.at > policy.stale_after or (event.eta is not None and event.eta < now):
        return _drop(new, OUT_FOR_DELIVERY, "stale")
    facts = Facts(state.window_start, state.window_end, event.eta)
    identity = f"{OUT_FOR_DELIVERY}:{event.at.astimezone(tz).date().isoformat()}"
    deadline = event.eta or _end_of_day(event.at, tz)
    return Decision(new, (Planned(OUT_FOR_DELIVERY, identity, facts, _hold(now, deadline, tz, policy)),))


def _eta(
    eta: datetime,
    at: datetime,
    arriving_soon: bool,
    state: OrderState,
    tz: ZoneInfo,
    now: datetime,
    policy: Policy,
) -> Decision:
    kind = ARRIVING_SOON if arriving_soon else ETA_CHANGED
    if state.status in FINAL or state.status == "failed":
        return _drop(state, kind, _final_reason(state))
    if now - at > policy.stale_after or eta < now:
        return _drop(state, kind, "stale")
    facts = Facts(state.window_start, state.window_end, eta)
    if arriving_soon:
        identity = f"{ARRIVING_SOON}:{eta.astimezone(tz).date().isoformat()}"
        return Decision(replace(state, last_eta=eta), (Planned(ARRIVING_SOON, identity, facts),))
    if not _moved_enough(eta, state, policy):
        return Decision(state)
    if state.eta_messages >= policy.eta_cap:
        return _drop(replace(state, last_eta=eta), ETA_CHANGED, "cap")
    new = replace(state, last_eta=eta, eta_messages=state.eta_messages + 1)
    identity = f"{ETA_CHANGED}:{_minute(eta_bucket(eta, policy.eta_threshold))}"
    return Decision(new, (Planned(ETA_CHANGED, identity, facts, _hold(now, eta, tz, policy)),))


def _finished(
    kind: str, status: str, identity: str, state: OrderState, tz: ZoneInfo, now: datetime, policy: Policy
) -> Decision:
    if state.status in FINAL:
        return _drop(state, kind, _final_reason(state))
    new = replace(state, status=status)
    return Decision(new, (Planned(kind, identity, Facts(), _hold(now, None, tz, policy)),), (), TIME_CRITICAL)


def _moved_enough(eta: datetime, state: OrderState, policy: Policy) -> bool:
    """An ETA worth a message: it moved past the threshold from what the customer was told (or from the
    promised window, when no time was told yet)."""
    if state.last_eta is not None:
        return abs(eta - state.last_eta) > policy.eta_threshold
    if state.window_start is not None and state.window_end is not None:
        return not (
            state.window_start - policy.eta_threshold <= eta <= state.window_end + policy.eta_threshold
        )
    return True


def eta_bucket(eta: datetime, size: timedelta) -> datetime:
    """The ETA rounded down to the threshold: two events naming nearly the same time share one message."""
    seconds = int(size.total_seconds())
    stamp = int(eta.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, eta.tzinfo)


def quiet_until(now: datetime, tz: ZoneInfo, policy: Policy) -> datetime | None:
    """When quiet hours end, if `now` falls inside them in the recipient's time zone; else None."""
    local = now.astimezone(tz)
    start, end = policy.quiet_start, policy.quiet_end
    t = local.time()
    if start == end:
        return None
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day: date = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tz)


def _hold(now: datetime, deadline: datetime | None, tz: ZoneInfo, policy: Policy) -> datetime | None:
    """In quiet hours a message waits for the morning, unless it would be useless by then."""
    until = quiet_until(now, tz, policy)
    if until is None:
        return None
    if deadline is None or deadline > until:
        return until
    return None


def _drop(state: OrderState, kind: str, reason: str) -> Decision:
    return Decision(state, (), (Dropped(kind, reason),))


def _final_reason(state: OrderState) -> str:
    return "cancelled" if state.status == "cancelled" else "already-" + state.status


def _minute(t: datetime) -> str:
    return t.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%MZ")


def _end_of_day(t: datetime, tz: ZoneInfo) -> datetime:
    return datetime.combine(t.astimezone(tz).date(), time(23, 59), tz)


def retry_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff with jitter: the n-th retry waits between half and all of base·2ⁿ⁻¹ (capped);
    `jitter` in [0, 1) picks where, so that many messages failing together do not retry together."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return ceiling / 2 + ceiling / 2 * jitter
