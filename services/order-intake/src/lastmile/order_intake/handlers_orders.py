"""Merchants' order use cases: accept one or many, change, cancel, read, list; every write idempotent
(`idempotency.py`). The order and its `orders.v1` event are committed before the answer goes out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter
from pydantic import ValidationError
from pydantic_core import to_json
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.errors import (
    FieldProblem,
    LastmileError,
    NotFound,
    ServiceUnavailable,
    Unprocessable,
    pointer,
)
from lastmile.common.ids import new_ids, uuid4_strings
from lastmile.order_intake import domain
from lastmile.order_intake.caches import Merchant
from lastmile.order_intake.handlers import SOURCE, Deps
from lastmile.order_intake.idempotency import Idempotency, Reply, commit
from lastmile.order_intake.schemas import (
    ChangeOrder,
    CreateOrder,
    CreateOrderBatch,
    OrderPage,
    OrderView,
    StatusView,
    ValidBatch,
)
from lastmile.order_intake.store import IntakeStore, NewOrder, OrderRow, extra_json
from lastmile.order_intake.writer import Pending, duplicate

ORDERS_RECEIVED = Counter(
    "lastmile_order_intake_orders_received_total", "Orders accepted", ["merchant", "kind"]
)
ORDERS_REJECTED = Counter(
    "lastmile_order_intake_orders_rejected_total", "Orders refused, by reason", ["reason"]
)


def rejected(reason: str, count: int = 1) -> None:
    ORDERS_REJECTED.labels(reason).inc(count)


_RECEIVED: dict[tuple[str, str], Any] = {}  # (merchant, kind) → its counter: labels() costs a lock and a key


def received(merchant_id: str, kind: str, count: int = 1) -> None:
    counter = _RECEIVED.get((merchant_id, kind))
    if counter is None:
        if len(_RECEIVED) >= 10_000:  # merchants come and go; the cache stays small
            _RECEIVED.clear()
        counter = _RECEIVED[merchant_id, kind] = ORDERS_RECEIVED.labels(merchant_id, kind)
    counter.inc(count)


# ---------------------------------------------------------------------------------------------------------
# Accept


class _Orders:
    """Makes the accepted orders of one request: what they share is formatted once (the time, the merchant,
    their envelopes' head) and their random ids are drawn in one go."""

    def __init__(self, merchant: Merchant, deps: Deps, now: datetime, count: int) -> None:
        self.merchant, self.now, self.base_url = merchant, now, deps.settings.tracking_base_url
        self.envelope = ev.EnvelopeWriter(ev.OrderCreated, SOURCE, now)
        self.order_ids, self.event_ids = new_ids("ord", count), uuid4_strings(count)

    def new(self, n: int, cmd: CreateOrder, depot: domain.Depot, at: str) -> tuple[NewOrder, dict[str, Any]]:
        """The request's `n`th order as rows, and its event's data."""
        order_id, merchant, now = self.order_ids[n], self.merchant, self.now
        data = domain.new_order(
            cmd,
            order_id=order_id,
            merchant_id=merchant.id,
            merchant_name=merchant.name,
            depot=depot,
            tracking_token=secrets.token_urlsafe(24),  # 192 bits: unguessable
            tracking_base_url=self.base_url,
            now=now,
            at=at,
        )
        # orjson: the bytes pydantic's to_json gives for this data (datetimes in UTC with Z), in half the time
        snapshot = orjson.dumps(data, option=orjson.OPT_UTC_Z).decode()
        order = NewOrder(
            order_id,
            merchant.id,
            cmd.reference,
            cmd.kind,
            depot.id,
            now,
            data["tracking_url"],
            snapshot,
            extra_json(cmd.service_level, cmd.metadata),
            self.envelope(order_id, snapshot, self.event_ids[n]),
        )
        return order, data


async def accept_order(cmd: CreateOrder, merchant: Merchant, deps: Deps, idem: Idempotency | None) -> Reply:
    """Persist the order and its orders.v1 event (with concurrent requests: one transaction), then answer."""
    try:
        now = deps.clock.now()
        problems = domain.check_order(cmd, now)
        if problems:
            raise domain.InvalidOrder(problems)
        depots = await deps.depots.get()
        depot = domain.choose_depot(depots, cmd.destination.lat, cmd.destination.lon, cmd.depot_id)
        order, data = _Orders(merchant, deps, now, 1).new(0, cmd, depot, "#")
        extra = {"service_level": cmd.service_level, "metadata": cmd.metadata}
        pending = Pending(merchant, idem, order, to_json(view_data(data, extra, "received", now)))
    except LastmileError as exc:
        if idem is None:
            raise
        pending = Pending(merchant, idem, None, b"", error=exc)  # unless it replays an earlier answer
    try:
        reply = await deps.writer.submit(pending)
    except IntegrityError:  # a batch or another replica took the reference (or the key) meanwhile
        return await _after_collision(cmd, merchant, deps, idem)
    if not reply.replayed:
        received(merchant.id, cmd.kind)
    return reply


async def _after_collision(
    cmd: CreateOrder, merchant: Merchant, deps: Deps, idem: Idempotency | None
) -> Reply:
    async with deps.db.read() as session:
        store = IntakeStore(session)
        stored = await store.stored_response(merchant.id, idem.key) if idem is not None else None
        taken = await store.references_taken(merchant.id, [cmd.reference])
    if stored is not None and idem is not None:
        return idem.replay(stored)
    if cmd.reference in taken:
        raise duplicate(cmd.reference, taken[cmd.reference])
    raise ServiceUnavailable("The order collided with a concurrent write; nothing was stored. Retry.")


# Orders prepared between two turns of the event loop: preparing 1,000 in one go held the loop for tens of
# milliseconds, and every await of the outbox relay (and of the other requests) waited behind it.
YIELD_EVERY = 100


@dataclass
class _Batch:
    items: list[dict[str, Any]]  # BatchItem's shape: plain data, serialised once for the whole answer
    accepted: list[tuple[int, NewOrder]]


def invalid(exc: ValidationError, at: str = "#") -> domain.InvalidOrder:
    """Pydantic's errors as problems, each pointing at its field under `at`."""
    errors = [
        FieldProblem(pointer=at + pointer(e["loc"])[1:].rstrip("/"), detail=e["msg"]) for e in exc.errors()
    ]
    return domain.InvalidOrder(errors)


def parse_order(body: bytes) -> CreateOrder:
    """One order, validated from the bytes in one pass; every problem named by its pointer."""
    try:
        return CreateOrder.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(exc) from None


def parse_batch(body: bytes) -> Sequence[CreateOrder] | Sequence[Any]:
    """The orders, validated in one pass from the bytes when all are valid (the common case, and the fast one);
    else the raw items, which are then validated one by one so that each gets its own problems."""
    try:
        return ValidBatch.model_validate_json(body).orders
    except ValidationError:
        pass
    try:
        return CreateOrderBatch.model_validate_json(body).orders
    except ValidationError as exc:
        raise invalid(exc) from None


async def _prepare_batch(
    raw: Sequence[Any], merchant: Merchant, depots: list[domain.Depot], deps: Deps
) -> _Batch:
    """Validate each order on its own; those that pass become rows, the others problems with pointers."""
    now = deps.clock.now()
    make = _Orders(merchant, deps, now, len(raw))
    batch = _Batch([], [])
    first_index: dict[str, int] = {}
    for i, item in enumerate(raw):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let the event loop serve others between slices of a large batch
        at = f"#/orders/{i}"
        try:
            cmd = item if isinstance(item, CreateOrder) else CreateOrder.model_validate(item)
            problems = domain.check_order(cmd, now, at)
            if problems:
                raise domain.InvalidOrder(problems)
            if cmd.reference in first_index:
                raise duplicate(cmd.reference, f"order {first_index[cmd.reference]} of this batch", at)
            depot = domain.choose_depot(depots, cmd.destination.lat, cmd.destination.lon, cmd.depot_id)
            order, _ = make.new(i, cmd, depot, at)
        except ValidationError as exc:
            batch.items.append(_rejected(i, _reference(item), invalid(exc, at)))
            continue
        except LastmileError as exc:
            batch.items.append(_rejected(i, _reference(item), exc))
            continue
        first_index[cmd.reference] = i
        batch.accepted.append((i, order))
        batch.items.append(
            {
                "index": i,
                "reference": order.reference,
                "outcome": "created",
                "id": order.order_id,
                "tracking_url": order.tracking_url,
            }
        )
    return batch


def _reference(item: Any) -> Any:
    if isinstance(item, CreateOrder):
        return item.reference
    return item.get("reference") if isinstance(item, dict) else None


def _rejected(index: int, reference: Any, exc: LastmileError) -> dict[str, Any]:
    item: dict[str, Any] = {
        "index": index,
        "outcome": "rejected",
        "problem": exc.problem().model_dump(exclude_none=True),
    }
    if isinstance(reference, str):
        item["reference"] = reference
    return item


async def accept_batch(raw: Sequence[Any], merchant: Merchant, deps: Deps, idem: Idempotency | None) -> Reply:
    """Each order is accepted or rejected on its own; the accepted ones commit together, with their events."""
    batch = await _prepare_batch(raw, merchant, await deps.depots.get(), deps)
    kept: list[NewOrder] = []
    items: list[dict[str, Any]] = []

    async def write(session: AsyncSession) -> Reply:
        store = IntakeStore(session)
        items[:] = batch.items
        taken = await store.references_taken(merchant.id, [o.reference for _, o in batch.accepted])
        kept.clear()
        for i, order in batch.accepted:
            if order.reference in taken:
                problem = duplicate(order.reference, taken[order.reference], f"#/orders/{i}")
                items[i] = _rejected(i, order.reference, problem)
            else:
                kept.append(order)
        await store.add_orders(kept, "received")
        outbox.stage_many(session, ev.ORDERS, [(order.depot_id, order.envelope) for order in kept])
        result = {"created": len(kept), "rejected": len(items) - len(kept), "items": items}
        return Reply(200, orjson.dumps(result))  # plain data: the bytes to_json gives, in half the time

    for attempt in range(5):  # a concurrent request may take a reference between the check and the insert
        try:
            reply = await commit(deps.db, idem, merchant, deps.clock.now(), write)
            break
        except IntegrityError:
            if attempt == 4:
                raise ServiceUnavailable(
                    "Concurrent writes kept taking this batch's references; retry."
                ) from None
    if not reply.replayed:
        for kind, count in collections.Counter(order.kind for order in kept).items():
            received(merchant.id, kind, count)
        for item in items:
            if "problem" in item:
                rejected(item["problem"].get("code") or "rejected")
    return reply


# ---------------------------------------------------------------------------------------------------------
# Change and cancel (until out for delivery)


async def _locked(
    session: AsyncSession, order_id: str, merchant: Merchant
) -> tuple[OrderRow, ev.OrderSnapshot]:
    row = await IntakeStore(session).order(order_id, merchant.id, lock=True)
    if row is None:
        raise NotFound(f"Order {order_id} not found")
    current = ev.OrderSnapshot.model_validate_json(row.snapshot).model_copy(update={"version": row.version})
    return row, current


async def change_order(
    order_id: str, cmd: ChangeOrder, merchant: Merchant, deps: Deps, idem: Idempotency | None
) -> Reply:
    """Replace window, destination or recipient; emits OrderUpdated (version + 1), which re-plans it."""
    now = deps.clock.now()
    problems = domain.check_change(cmd, now)
    depots = {d.id: d for d in await deps.depots.get()}

    async def write(session: AsyncSession) -> Reply:
        if problems:  # after the replay check: a retry of an accepted change replays, whatever the time
            raise domain.InvalidOrder(problems)
        row, current = await _locked(session, order_id, merchant)
        depot = depots.get(row.depot_id)
        if depot is None:
            raise domain.NoDepot(f"Depot {row.depot_id} is no longer known")
        updated = domain.change_order(current, row.status, cmd, depot, now)
        extra = json.loads(row.extra)
        if cmd.time_windows is not None or cmd.service_level is not None:
            extra["service_level"] = cmd.service_level
        row.snapshot = ev.OrderSnapshot.model_validate(updated.model_dump()).model_dump_json()
        row.extra, row.version, row.updated_at = json.dumps(extra), updated.version, now
        outbox.add(session, updated, source=SOURCE)
        return Reply(200, view_of(row).model_dump_json().encode())

    return await commit(deps.db, idem, merchant, now, write)


async def cancel_order(
    order_id: str, reason: str | None, merchant: Merchant, deps: Deps, idem: Idempotency | None
) -> Reply:
    """Cancel before it is out for delivery; emits OrderCancelled (version + 1)."""
    now = deps.clock.now()

    async def write(session: AsyncSession) -> Reply:
        row, current = await _locked(session, order_id, merchant)
        cancelled = domain.cancel_order(current, row.status, reason, now)
        row.snapshot = current.model_copy(update={"version": cancelled.version}).model_dump_json()
        row.status, row.version, row.updated_at = "cancelled", cancelled.version, now
        await IntakeStore(session).add_statuses([(row.id, "cancelled", now, {"reason": reason})])
        outbox.add(session, cancelled, source=SOURCE)
        return Reply(200, view_of(row).model_dump_json().encode())

    return await commit(deps.db, idem, merchant, now, write)


# ---------------------------------------------------------------------------------------------------------
# Read


def view_data(
    snapshot: dict[str, Any], extra: dict[str, Any], status: str, updated_at: datetime
) -> dict[str, Any]:
    """An order as merchants see it (OrderView's shape) from its event data and what only they see."""
    data = {k: v for k, v in snapshot.items() if k in VIEW_FIELDS}
    data.update(
        id=snapshot["order_id"],
        status=status,
        service_level=extra.get("service_level"),
        metadata=extra.get("metadata") or {},
        updated_at=updated_at,
    )
    return data


VIEW_FIELDS = frozenset(OrderView.model_fields) - {"id", "status", "service_level", "metadata", "updated_at"}


def view_of(row: OrderRow) -> OrderView:
    return OrderView.model_validate(
        view_data(json.loads(row.snapshot), json.loads(row.extra), row.status, row.updated_at)
    )


async def get_order(order_id: str, merchant: Merchant, deps: Deps) -> OrderRow:
    """Another merchant's order is reported as missing (404), never as forbidden."""
    async with deps.db.read() as session:
        row = await IntakeStore(session).order(order_id, merchant.id)
    if row is None:
        raise NotFound(f"Order {order_id} not found")
    return row


async def order_history(order_id: str, merchant: Merchant, deps: Deps) -> list[StatusView]:
    await get_order(order_id, merchant, deps)
    async with deps.db.read() as session:
        rows = await IntakeStore(session).history(order_id)
    return [StatusView(status=r.status, at=r.at, detail=r.detail) for r in rows]


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    reference: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


def encode_cursor(order_id: str) -> str:
    return base64.urlsafe_b64encode(order_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        order_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        order_id = ""
    if not order_id.startswith("ord_"):
        raise Unprocessable(
            "The cursor is not one this API gave",
            code="validation-error",
            errors=[FieldProblem(pointer="#/query/cursor", detail="not a cursor this API gave")],
        )
    return order_id


async def list_orders(merchant: Merchant, deps: Deps, f: ListFilter) -> OrderPage:
    """Newest first, `limit` at a time; `next_cursor` continues after the last one."""
    before = decode_cursor(f.cursor) if f.cursor else None
    async with deps.db.read() as session:
        rows = await IntakeStore(session).list_orders(
            merchant.id,
            status=f.status,
            reference=f.reference,
            created_from=f.created_from,
            created_to=f.created_to,
            before_id=before,
            limit=f.limit + 1,
        )
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    return OrderPage(
        items=[view_of(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )
