"""KPIs of a simulated day and the report a person would rather look at than read (inline SVG, no tiles)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from statistics import mean, median
from typing import Any

from lastmile.sim.observe import Observations, OrderSeen
from lastmile.sim.runner import SimConfig

# Cost model per vehicle profile: a day's fixed cost, per kilometre, per hour on duty (EUR).
COSTS = {"van": (80.0, 0.25, 25.0), "car": (60.0, 0.20, 25.0), "cargo_bike": (40.0, 0.0, 22.0)}
FINAL = ("delivered", "failed", "cancelled", "unassigned")


def kpis(obs: Observations, config: SimConfig) -> dict[str, Any]:
    orders = list(obs.orders.values())
    accepted = [o for o in orders if o.order_id]
    delivered = [o for o in accepted if o.outcome == "delivered"]
    eta_errors = _eta_errors(delivered)
    attempted = [o for o in accepted if o.outcome]
    on_time = [o for o in delivered if _on_time(o)]
    used = [v for v in obs.vehicles.values() if v.stops]
    km = sum(v.metres for v in used) / 1000
    driving_h = sum(v.driving_s for v in used) / 3600
    cost = sum(
        COSTS.get(v.profile, COSTS["van"])[0]
        + COSTS.get(v.profile, COSTS["van"])[1] * v.metres / 1000
        + COSTS.get(v.profile, COSTS["van"])[2] * v.busy_s / 3600
        for v in used
    )
    per = max(1, len(delivered))
    kinds = Counter(m.get("kind") for m in obs.messages)
    return {
        "seed": config.seed,
        "day": config.day.isoformat(),
        "orders": len(orders),
        "accepted": len(accepted),
        "not_accepted": dict(
            sorted(Counter(o.rejected or "no answer" for o in orders if not o.order_id).items())
        ),
        "vehicles_used": len(used),
        "final_status": dict(sorted(Counter(o.final_status or "unknown" for o in accepted).items())),
        "on_time_rate": _ratio(len(on_time), len(delivered)),
        "km_per_delivery": round(km / per, 3),
        "driving_hours_per_delivery": round(driving_h / per, 4),
        "cost_per_delivery_eur": round(cost / per, 2),
        "unassigned_reasons": dict(
            Counter(o.unassigned_reason or "not given" for o in accepted if o.final_status == "unassigned")
        ),
        "first_attempt_success": _ratio(
            sum(1 for o in attempted if o.outcome == "delivered" and o.attempts == 1), len(attempted)
        ),
        "first_plan_min": {
            group: {"median": _stat(median, v), "p90": _stat(_p90, v), "samples": len(v)}
            for group, v in _first_plan(accepted).items()
        },
        "eta_mae_min": {k: _stat(mean, v) for k, v in eta_errors.items()},
        # the mean is the figure; a few stops estimated hours off move it by minutes, the median does not
        "eta_median_error_min": {k: _stat(median, v) for k, v in eta_errors.items()},
        "eta_samples": {k: len(v) for k, v in eta_errors.items()},
        "messages_per_order": {
            k: round(v / max(1, len(accepted)), 3)
            for k, v in sorted(kinds.items(), key=lambda kv: str(kv[0]))
        },
        "messages": len(obs.messages),
        "tracking_page_views": obs.tracking_views,
        "pings": {"sent": obs.pings["sent"], "failed": obs.pings["failed"]},
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _on_time(o: OrderSeen) -> bool:
    return bool(
        o.promised and o.arrived_at and o.promised[0] - timedelta(minutes=1) <= o.arrived_at <= o.promised[1]
    )


def live_eta(o: OrderSeen, minutes_before: int) -> datetime | None:
    """The ETA the customer saw closest to `minutes_before` the real arrival (within 5 minutes of it)."""
    if not o.arrived_at or not o.etas:
        return None
    moment = o.arrived_at - timedelta(minutes=minutes_before)
    seen_at, eta = min(o.etas, key=lambda pair: abs((pair[0] - moment).total_seconds()))
    return eta if abs((seen_at - moment).total_seconds()) <= 300 else None


def _eta_errors(delivered: list[OrderSeen]) -> dict[str, list[float]]:
    """Minutes between each delivery's ring and the live ETA seen 30 (10) minutes before, and its planned time."""
    live = {
        f"live_{m}": [
            abs((eta - o.arrived_at).total_seconds()) / 60
            for o in delivered
            if o.arrived_at and (eta := live_eta(o, m))
        ]
        for m in (30, 10)
    }
    planned = [
        abs((o.arrived_at - o.planned_arrival).total_seconds()) / 60
        for o in delivered
        if o.planned_arrival and o.arrived_at
    ]
    return {**live, "planned": planned}


def _first_plan(accepted: list[OrderSeen]) -> dict[str, list[float]]:
    """Minutes each order waited for its first plan, the merchants' morning batch apart from the orders of the
    day (for which the wait decides whether a van that has not left yet can still take them)."""
    waits: dict[str, list[float]] = {"batch": [], "same_day": []}
    for o in accepted:
        if o.first_plan_min is not None:
            waits["batch" if o.plan.batch else "same_day"].append(o.first_plan_min)
    return waits


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def _stat(statistic: Callable[[list[float]], float], values: list[float]) -> float | None:
    return round(statistic(values), 2) if values else None


# ---------------------------------------------------------------------------------------------------------
# The HTML report


def html_report(obs: Observations, config: SimConfig, figures: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in figures.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Lastmile: a simulated day, {config.day}</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}}
table{{border-collapse:collapse}}th,td{{text-align:left;padding:.25rem .8rem;border-bottom:1px solid #ddd;vertical-align:top}}
figure{{margin:2rem 0}}figcaption{{font-weight:600;margin-bottom:.5rem}}svg{{max-width:100%;height:auto;background:#fafafa}}</style>
</head><body>
<h1>A simulated day in {html.escape(config.city.name)}, {config.day}</h1>
<p>{figures.get("orders")} orders, {figures.get("vehicles_used")} vehicles used, seed {config.seed}.</p>
<table>{rows}</table>
<figure><figcaption>Routes as driven</figcaption>{routes_svg(obs, config)}</figure>
<figure><figcaption>Deliveries per hour against promises</figcaption>{hourly_svg(obs)}</figure>
<figure><figcaption>ETA error: live ETA 30 minutes before arrival against the planned arrival time</figcaption>{eta_svg(obs)}</figure>
</body></html>
"""


def table(figures: dict[str, Any]) -> str:
    """The KPI table for a terminal."""
    width = max(len(k) for k in figures)
    return "\n".join(f"{k:<{width}}  {_fmt(v)}" for k, v in figures.items())


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return (
            ", ".join(f"{k}: ({_fmt(v)})" if isinstance(v, dict) else f"{k}: {v}" for k, v in value.items())
            or "none"
        )
    return "n/a" if value is None else str(value)


PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def routes_svg(obs: Observations, config: SimConfig, width: int = 900, height: int = 700) -> str:
    points = [p for v in obs.vehicles.values() for p in v.track] + [
        (d.lat, d.lon) for d in config.city.depots
    ]
    if not points:
        return "<p>No routes were driven.</p>"
    lat0, lat1 = min(p[0] for p in points), max(p[0] for p in points)
    lon0, lon1 = min(p[1] for p in points), max(p[1] for p in points)

    def xy(p: tuple[float, float]) -> str:
        x = 20 + (p[1] - lon0) / max(lon1 - lon0, 1e-9) * (width - 40)
        y = 20 + (lat1 - p[0]) / max(lat1 - lat0, 1e-9) * (height - 40)
        return f"{x:.1f},{y:.1f}"

    parts = []
    for i, vehicle in enumerate(obs.vehicles.values()):
        depot = config.city.depots[vehicle.depot]
        track = [(depot.lat, depot.lon), *vehicle.track]
        if len(track) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.2" opacity=".75" points="{" ".join(xy(p) for p in track)}"/>'
            )
    for o in obs.orders.values():
        if o.outcome == "failed":
            cx, cy = xy((o.plan.body["destination"]["lat"], o.plan.body["destination"]["lon"])).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="#d62728"><title>failed</title></circle>')
    for d in config.city.depots:
        x, y = (float(c) for c in xy((d.lat, d.lon)).split(","))
        parts.append(
            f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" fill="#000"><title>{html.escape(d.name)}</title></rect>'
        )
    return f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="routes">{"".join(parts)}</svg>'


def hourly_svg(obs: Observations, width: int = 900, height: int = 300) -> str:
    delivered = Counter(
        o.arrived_at.astimezone(o.promised[0].tzinfo).hour
        for o in obs.orders.values()
        if o.outcome == "delivered" and o.arrived_at and o.promised
    )
    promised = Counter(
        (o.promised[0] + (o.promised[1] - o.promised[0]) / 2).hour for o in obs.orders.values() if o.promised
    )
    late = Counter(
        o.arrived_at.astimezone(o.promised[0].tzinfo).hour
        for o in obs.orders.values()
        if o.outcome == "delivered" and o.promised and o.arrived_at and o.arrived_at > o.promised[1]
    )
    hours = range(6, 23)
    top = max([1, *delivered.values(), *promised.values()])
    bar = (width - 60) / len(hours)
    parts = []
    for i, h in enumerate(hours):
        x = 40 + i * bar
        for count, colour, dx in (
            (promised[h], "#cfd8e3", 0.0),
            (delivered[h], "#2ca02c", bar * 0.3),
            (late[h], "#d62728", bar * 0.3),
        ):
            height_px = count / top * (height - 50)
            parts.append(
                f'<rect x="{x + dx:.1f}" y="{height - 30 - height_px:.1f}" width="{bar * 0.55:.1f}" height="{height_px:.1f}" fill="{colour}"/>'
            )
        parts.append(f'<text x="{x + bar / 3:.1f}" y="{height - 12}" font-size="11">{h}</text>')
    legend = '<text x="40" y="16" font-size="12">grey: promised (window middle) · green: delivered · red: late</text>'
    return f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="deliveries per hour">{legend}{"".join(parts)}</svg>'


def eta_svg(obs: Observations, width: int = 900, height: int = 300) -> str:
    live: Counter[int] = Counter()
    planned: Counter[int] = Counter()
    for o in obs.orders.values():
        if o.outcome != "delivered" or not o.arrived_at:
            continue
        eta = live_eta(o, 30)
        if eta is not None:
            live[_bucket((eta - o.arrived_at).total_seconds() / 60)] += 1
        if o.planned_arrival:
            planned[_bucket((o.planned_arrival - o.arrived_at).total_seconds() / 60)] += 1
    buckets = list(range(-60, 61, 5))
    top = max([1, *live.values(), *planned.values()])
    bar = (width - 60) / len(buckets)
    parts = []
    for i, b in enumerate(buckets):
        x = 40 + i * bar
        for count, colour, dx in ((planned[b], "#cfd8e3", 0.0), (live[b], "#1f77b4", bar * 0.35)):
            height_px = count / top * (height - 50)
            parts.append(
                f'<rect x="{x + dx:.1f}" y="{height - 30 - height_px:.1f}" width="{bar * 0.55:.1f}" height="{height_px:.1f}" fill="{colour}"/>'
            )
        if b % 15 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="11">{b:+d}</text>')
    legend = '<text x="40" y="16" font-size="12">minutes early (−) or late (+) · grey: planned arrival · blue: live ETA 30 min before</text>'
    return f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="ETA error">{legend}{"".join(parts)}</svg>'


def _bucket(minutes: float) -> int:
    return max(-60, min(60, int(round(minutes / 5) * 5)))


def _iso(t: datetime | None) -> str:
    return t.isoformat() if t else ""


def order_rows(obs: Observations) -> list[dict[str, Any]]:
    """One row per order, what the simulator saw (var/report/orders.csv): to find why one was late."""
    rows = []
    for o in sorted(obs.orders.values(), key=lambda o: o.plan.seq):
        rows.append(
            {
                "seq": o.plan.seq,
                "order_id": o.order_id or "",
                "posted_at": _iso(o.plan.post_at),
                "vehicle_id": o.vehicle_id or "",
                "final_status": o.final_status or "",
                "outcome": o.outcome or "",
                "promised_start": _iso(o.promised[0] if o.promised else None),
                "promised_end": _iso(o.promised[1] if o.promised else None),
                "planned_arrival": _iso(o.planned_arrival),
                "arrived_at": _iso(o.arrived_at),
                "unassigned_reason": o.unassigned_reason or "",
                "first_plan_min": "" if o.first_plan_min is None else o.first_plan_min,
                **{f"eta_{m}": _iso(live_eta(o, m)) for m in (30, 10)},
                "etas_seen": len(o.etas),
            }
        )
    return rows
