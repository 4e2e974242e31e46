"""A day of orders: the warehouse's morning batch, same-day orders until a cutoff, returns, narrow windows,
cancellations and address changes, from several merchants; and how each customer behaves. All from one seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.sim.city import City
from lastmile.sim.geo import offset


@dataclass(frozen=True)
class Merchant:
    name: str
    weight: float
    skills: tuple[tuple[str, float], ...] = ()  # skill and the share of this merchant's orders needing it


MERCHANTS = (
    Merchant("Kiezbuch", 0.3),
    Merchant("FreshBox", 0.2, (("cold_chain", 0.6),)),
    Merchant("Urban Threads", 0.35),
    Merchant("TechNest", 0.15, (("id_check", 0.3),)),
)

FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Mia",
    "Ben",
    "Lea",
    "Paul",
    "Emma",
    "Noah",
    "Lina",
    "Jonas",
    "Sofia",
    "Elias",
)
LAST = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Schmidt",
    "Müller",
    "Weber",
    "Dubois",
    "García",
    "Rossi",
    "Novak",
    "Yilmaz",
)
LANGUAGES = (("de", 0.6), ("en", 0.25), ("fr", 0.08), ("es", 0.07))


@dataclass(frozen=True)
class DayConfig:
    day: date
    orders: int = 2000
    morning_share: float = 0.65  # posted in the warehouse's batch, 06:00-06:30
    same_day_cutoff: str = "12:00"
    return_share: float = 0.08
    narrow_share: float = 0.15
    cancel_share: float = 0.02
    change_share: float = 0.02
    not_home_share: float = 0.05
    opt_out_share: float = 0.03
    tracking_share: float = 0.3


@dataclass(frozen=True)
class OrderPlan:
    """One order's life as the simulator will play it."""

    seq: int
    merchant: int
    post_at: datetime
    body: dict[str, Any]
    cancel_at: datetime | None = None
    change_at: datetime | None = None
    changed_destination: dict[str, Any] | None = None
    at_home: bool = True
    opts_out: str | None = None  # "sms" | "email" after the first message on that channel
    opens_tracking: bool = False
    batch: bool = False  # posted with the merchant's morning batch (POST /v1/orders/batch)
    extra: dict[str, Any] = field(default_factory=dict)


def plan_day(city: City, config: DayConfig, seed: int) -> list[OrderPlan]:
    """The day's orders sorted by the time they are posted; the same seed gives the same day."""
    rng = random.Random(f"{seed}:orders")
    tz = ZoneInfo(city.timezone)
    plans = [_order(i, city, config, rng, tz) for i in range(config.orders)]
    return sorted(plans, key=lambda p: (p.post_at, p.seq))


def _at(day: date, hhmm: str | float, tz: ZoneInfo) -> datetime:
    if isinstance(hhmm, str):
        hours, minutes = (int(x) for x in hhmm.split(":"))
        return datetime.combine(day, time(hours, minutes), tz)
    return datetime.combine(day, time(0), tz) + timedelta(hours=hhmm)


def _order(seq: int, city: City, config: DayConfig, rng: random.Random, tz: ZoneInfo) -> OrderPlan:
    day = config.day
    merchant = rng.choices(range(len(MERCHANTS)), weights=[m.weight for m in MERCHANTS])[0]
    morning = rng.random() < config.morning_share
    cutoff = _at(day, config.same_day_cutoff, tz)
    # The morning batch: each merchant's warehouse uploads the night's orders at once, 06:00-06:20.
    post_at = (
        _at(day, 6 + merchant / 12, tz)
        if morning
        else _at(day, 6.5, tz) + (cutoff - _at(day, 6.5, tz)) * rng.random()
    )
    start, end = _window(rng, config, day, tz, post_at, morning)
    kind = "return" if rng.random() < config.return_share else "delivery"
    lat, lon = city.customer(rng)
    skills = [s for s, share in MERCHANTS[merchant].skills if rng.random() < share]
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    language = rng.choices([lang for lang, _ in LANGUAGES], weights=[w for _, w in LANGUAGES])[0]
    body: dict[str, Any] = {
        "reference": f"SIM-{day:%Y%m%d}-{seq:05d}",
        "kind": kind,
        "recipient": {
            "name": name,
            "phone": f"+4915{rng.randrange(10**8, 10**9)}",
            "email": f"customer{seq}@example.com",
            "language": language,
        },
        "destination": {"lat": round(lat, 6), "lon": round(lon, 6), "city": city.name, "country": "DE"},
        "time_windows": [{"start": start.isoformat(), "end": end.isoformat()}],
        "parcels": [
            {"count": rng.choice((1, 1, 1, 2, 3)), "weight_kg": round(rng.lognormvariate(1.0, 0.7), 2)}
        ],
        "service_time_s": rng.choice((120, 180, 180, 240, 300)),
        "skills": skills,
    }
    latest_change = start - timedelta(hours=1)
    cancel_at = change_at = None
    changed = None
    roll = rng.random()
    if roll < config.cancel_share and latest_change > post_at:
        cancel_at = post_at + (latest_change - post_at) * rng.random()
    elif roll < config.cancel_share + config.change_share and latest_change > post_at:
        change_at = post_at + (latest_change - post_at) * rng.random()
        moved = offset((lat, lon), rng.gauss(0, 250), rng.gauss(0, 250))
        changed = {**body["destination"], "lat": round(moved[0], 6), "lon": round(moved[1], 6)}
    opts_out = rng.choice(("sms", "email")) if rng.random() < config.opt_out_share else None
    return OrderPlan(
        seq=seq,
        merchant=merchant,
        post_at=post_at,
        body=body,
        cancel_at=cancel_at,
        change_at=change_at,
        changed_destination=changed,
        at_home=rng.random() >= config.not_home_share,
        opts_out=opts_out,
        opens_tracking=rng.random() < config.tracking_share,
        batch=morning,
    )


def _window(
    rng: random.Random, config: DayConfig, day: date, tz: ZoneInfo, post_at: datetime, morning: bool
) -> tuple[datetime, datetime]:
    if rng.random() < config.narrow_share:
        earliest = 9.0 if morning else max(9.0, _hours(post_at) + 3)
        start_h = min(19.0, earliest + rng.random() * max(0.0, 19.0 - earliest))
        start = _at(day, round(start_h * 2) / 2, tz)
        return start, start + timedelta(hours=rng.choice((1, 2)))
    if morning:
        start_h, end_h = rng.choices(
            ((9, 13), (12, 17), (14, 19), (9, 18), (16, 21)), weights=(3, 3, 2, 4, 1)
        )[0]
        return _at(day, float(start_h), tz), _at(day, float(end_h), tz)
    start_h = min(17.0, max(13.0, _hours(post_at) + 3))
    start = _at(day, round(start_h * 2) / 2, tz)
    return start, min(_at(day, 21.0, tz), start + timedelta(hours=rng.choice((3, 4, 5))))


def _hours(t: datetime) -> float:
    return t.hour + t.minute / 60
