"""What the simulator saw during a day: the ground truth the platform's promises are measured against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lastmile.sim.day import OrderPlan


@dataclass
class OrderSeen:
    plan: OrderPlan
    merchant_key: str
    order_id: str | None = None
    tracking_url: str | None = None
    rejected: str | None = None
    cancelled: bool = False
    vehicle_id: str | None = None
    planned_arrival: datetime | None = None  # when the vehicle set out on its route
    promised: tuple[datetime, datetime] | None = None
    arrived_at: datetime | None = None
    outcome: str | None = None  # delivered | failed
    attempts: int = 0
    out: bool = False  # on a vehicle that left the depot
    refused: int | None = None  # the HTTP status when the platform refused the driver's result
    etas: list[tuple[datetime, datetime]] = field(default_factory=list)  # (seen at, ETA)
    final_status: str | None = None
    history: list[str] = field(default_factory=list)
    unassigned_reason: str | None = None
    first_plan_min: float | None = None  # simulated minutes from acceptance to the first plan's word on it


@dataclass
class VehicleSeen:
    vehicle_id: str
    depot: int
    profile: str
    metres: float = 0.0
    driving_s: float = 0.0
    busy_s: float = 0.0  # driving, serving and waiting at stops
    stops: int = 0
    moving: bool = False
    track: list[tuple[float, float]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Observations:
    orders: dict[int, OrderSeen] = field(default_factory=dict)  # by plan seq
    by_order_id: dict[str, OrderSeen] = field(default_factory=dict)
    vehicles: dict[str, VehicleSeen] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)
    opted_out: dict[tuple[str, str], float] = field(default_factory=dict)  # (channel, address) → real time
    tracking_views: int = 0
    pings: Counter[str] = field(default_factory=Counter)  # "sent" | "failed": positions the phones reported
    keys: list[str] = field(default_factory=list)  # the tenant's merchant API keys and device keys

    def attach(self, seen: OrderSeen) -> None:
        self.orders[seen.plan.seq] = seen
        if seen.order_id:
            self.by_order_id[seen.order_id] = seen

    def counts(self) -> dict[str, int]:
        orders = list(self.orders.values())
        return {
            "received": sum(1 for o in orders if o.order_id),
            "scheduled": sum(1 for o in orders if o.vehicle_id),
            "out for delivery": sum(1 for o in orders if o.out and not o.outcome),
            "delivered": sum(1 for o in orders if o.outcome == "delivered"),
            "failed": sum(1 for o in orders if o.outcome == "failed"),
            "late": sum(
                1
                for o in orders
                if o.outcome and o.promised and o.arrived_at and o.arrived_at > o.promised[1]
            ),
            "moving": sum(1 for v in self.vehicles.values() if v.moving),
            "messages": len(self.messages),
        }
