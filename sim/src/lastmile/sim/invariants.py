"""The invariants every simulated day keeps, whatever broke during it: each check returns what violates it
(empty: kept), so a test asserts `== []` and a failure shows the offending orders or messages.

Shared by the simulator's own day test (sim/tests/service/test_day.py) and the fault test that kills services
mid-day (tests/faults/test_city_day.py): test files cannot import each other."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lastmile.sim.observe import Observations, OrderSeen

END_STATES = frozenset({"delivered", "failed", "cancelled", "unassigned"})
# Kinds a customer hears at most once per order and channel.
ONCE = frozenset({"out_for_delivery", "arriving_soon", "delivered"})
# Not `scheduled`: when a re-plan moves the promised window, the planner announces the new promise and the
# customer is told it (the notifier's identity for it is `scheduled:<window start>`); the same promise twice is
# the same text twice.


def accepted(observations: Observations) -> list[OrderSeen]:
    """The orders the platform took (it answered with an id)."""
    return [o for o in observations.orders.values() if o.order_id]


def not_in_an_end_state(observations: Observations) -> list[tuple[str | None, str | None, str | None]]:
    """Accepted orders that did not end delivered, failed, cancelled, or unassigned with a reason:
    (order id, final status, the vehicle it was last seen on)."""
    return [
        (o.order_id, o.final_status, o.vehicle_id)
        for o in accepted(observations)
        if o.final_status not in END_STATES or (o.final_status == "unassigned" and not o.unassigned_reason)
    ]


def messages_twice(observations: Observations) -> list[tuple[Any, ...]]:
    """The same text to the same address more than once (this covers a promise told twice: the text names the
    window), or a once-per-order kind twice on a channel."""
    same_text = Counter((m["channel"], m["to"], m["body"]) for m in observations.messages)
    once = Counter(
        (m["order_id"], m["channel"], m["kind"]) for m in observations.messages if m["kind"] in ONCE
    )
    return [k for counts in (same_text, once) for k, n in counts.items() if n > 1]


def messages_after_opt_out(observations: Observations, grace_s: float = 1.0) -> list[tuple[str, str]]:
    """(channel, kind) of messages written more than `grace_s` after their address opted out: a message that
    was already leaving when the customer opted out may land a moment later."""
    return [
        (m["channel"], m["kind"])
        for m in observations.messages
        if (at := observations.opted_out.get((m["channel"], m["to"]))) is not None
        and m["written"] > at + grace_s
    ]


def delivered_without_scheduled_before(observations: Observations) -> list[tuple[str | None, list[str]]]:
    """Delivered orders whose history lacks `scheduled` before `delivered`: (order id, history)."""
    return [
        (o.order_id, o.history)
        for o in observations.orders.values()
        if o.final_status == "delivered"
        and (
            "scheduled" not in o.history
            or "delivered" not in o.history
            or o.history.index("scheduled") > o.history.index("delivered")
        )
    ]
