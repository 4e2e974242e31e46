"""Order intake's HTTP routes: parse, authenticate, call a handler, shape the answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request, Response
from pydantic import BaseModel

from lastmile.common.auth import OpsAuth, bearer_token
from lastmile.common.errors import FieldProblem, LastmileError, Unprocessable, problem_responses
from lastmile.order_intake import examples as ex
from lastmile.order_intake import handlers
from lastmile.order_intake import handlers_orders as orders
from lastmile.order_intake.caches import Merchant
from lastmile.order_intake.handlers import Deps
from lastmile.order_intake.idempotency import Idempotency, Reply
from lastmile.order_intake.schemas import (
    BatchResult,
    CancelOrder,
    ChangeOrder,
    CreateKey,
    CreateMerchant,
    CreateOrder,
    CreateOrderBatch,
    KeyCreated,
    MerchantCreated,
    OrderPage,
    OrderStatus,
    OrderView,
    StatusView,
    TrackingView,
)


async def get_deps(request: Request) -> Deps:  # async: FastAPI runs plain functions in a thread pool
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


@dataclass(frozen=True)
class Caller:
    merchant: Merchant
    deps: Deps


async def merchant_caller(request: Request) -> Caller:
    """The caller's merchant, within its rate limit (429 with Retry-After beyond it).

    One dependency taking only the request: FastAPI's cost grows with each dependency a route solves."""
    deps: Deps = request.app.state.deps
    merchant = await handlers.authenticate_merchant(bearer_token(request), deps)
    deps.limiter.check(merchant.id)
    return Caller(merchant, deps)


async def order_sender(request: Request) -> Caller:
    """As merchant_caller, counting refusals as rejected orders."""
    with counting_rejections():
        return await merchant_caller(request)


MerchantCaller = Annotated[Caller, Depends(merchant_caller)]
OrderSender = Annotated[Caller, Depends(order_sender)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key and same request: the first answer again, and nothing done twice. Same key, "
        "another request: 422. Keys are kept 24 hours per merchant.",
        examples=["3f0c9a1e-5d2b-4c8e-9f7a-1b2c3d4e5f60"],
    ),
]


IDEMPOTENCY_KEY_DOC = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Same key and same request: the first answer again, and nothing done twice. Same key, "
    "another request: 422. Keys are kept 24 hours per merchant.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "example": "3f0c9a1e-5d2b-4c8e-9f7a-1b2c3d4e5f60",
}


def read_by_hand(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` of the two busiest routes, which read their body (validated from the bytes in one pass)
    and their Idempotency-Key themselves: each parameter FastAPI resolves costs every request."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    body = {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}
    return {"requestBody": body, "parameters": [IDEMPOTENCY_KEY_DOC]}


@contextmanager
def counting_rejections() -> Iterator[None]:
    try:
        yield
    except LastmileError as exc:
        orders.rejected(exc.code)
        raise


async def idempotency(request: Request, key: str | None) -> Idempotency | None:
    return Idempotency.of(key, request.method, request.url.path, await request.body())


def reply(r: Reply) -> Response:
    headers = {"Idempotent-Replayed": "true"} if r.replayed else None
    return Response(r.body, status_code=r.status_code, media_type="application/json", headers=headers)


router = APIRouter()

# Routes are matched in the order they are declared: the busiest first.

# ---------------------------------------------------------------------------------------------------------
# Merchants: orders

WRITE_PROBLEMS = problem_responses(400, 401, 404, 409, 413, 422, 429, 503)


@router.post(
    "/v1/orders",
    status_code=201,
    tags=["orders"],
    response_model=OrderView,
    responses={
        201: ex.answer(ex.ORDER_VIEW, "Accepted: stored with its event before this answer"),
        **problem_responses(400, 401, 409, 413, 422, 429, 503),
    },
    openapi_extra=read_by_hand(CreateOrder, ex.CREATE_EXAMPLES),
)
async def create_order(
    request: Request, caller: OrderSender, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept one order. It is stored before this answers; planning follows asynchronously."""
    with counting_rejections():
        body = await request.body()
        idem = Idempotency.of(idempotency_key, request.method, request.url.path, body)
        cmd = orders.parse_order(body)
        return reply(await orders.accept_order(cmd, caller.merchant, caller.deps, idem))


@router.post(
    "/v1/orders/batch",
    status_code=200,
    tags=["orders"],
    response_model=BatchResult,
    responses={
        200: ex.answer(ex.BATCH_RESULT, "One result per order, in the order given"),
        **problem_responses(400, 401, 413, 422, 429, 503),
    },
    openapi_extra=read_by_hand(CreateOrderBatch, {"two orders": {"value": ex.BATCH}}),
)
async def create_orders(
    request: Request, caller: OrderSender, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept up to 1,000 orders: each is created or rejected on its own (problems point into the batch)."""
    with counting_rejections():
        body = await request.body()
        idem = Idempotency.of(idempotency_key, request.method, request.url.path, body)
        return reply(await orders.accept_batch(orders.parse_batch(body), caller.merchant, caller.deps, idem))


def document(app: FastAPI, *models: type[BaseModel]) -> None:
    """Put models that no route parameter names (bodies read by hand) into the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)
                schemas.setdefault(model.__name__, schema)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


@router.get(
    "/v1/orders",
    tags=["orders"],
    response_model=OrderPage,
    responses={200: ex.answer(ex.PAGE), **problem_responses(401, 422, 429)},
)
async def list_orders(
    caller: MerchantCaller,
    status: OrderStatus | None = None,
    reference: Annotated[str | None, Query(max_length=100)] = None,
    created_from: Annotated[datetime | None, Query(description="Inclusive, with a timezone")] = None,
    created_to: Annotated[datetime | None, Query(description="Exclusive, with a timezone")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderPage:
    """The merchant's orders, newest first, filtered; follow `next_cursor` for more."""
    f = orders.ListFilter(
        status,
        reference,
        _aware(created_from, "created_from"),
        _aware(created_to, "created_to"),
        cursor,
        limit,
    )
    return await orders.list_orders(caller.merchant, caller.deps, f)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Unprocessable(
            f"{name} needs a timezone",
            code="validation-error",
            errors=[
                FieldProblem(pointer=f"#/query/{name}", detail="needs a timezone, e.g. 2030-12-01T00:00:00Z")
            ],
        )
    return value


@router.get(
    "/v1/orders/{order_id}",
    tags=["orders"],
    response_model=OrderView,
    responses={200: ex.answer(ex.ORDER_VIEW), **problem_responses(401, 404, 429)},
)
async def read_order(order_id: str, caller: MerchantCaller) -> Response:
    """One of the merchant's orders with its current status."""
    row = await orders.get_order(order_id, caller.merchant, caller.deps)
    return Response(orders.view_of(row).model_dump_json(), media_type="application/json")


@router.patch(
    "/v1/orders/{order_id}",
    tags=["orders"],
    response_model=OrderView,
    responses={200: ex.answer({**ex.ORDER_VIEW, "version": 2}), **WRITE_PROBLEMS},
)
async def change_order(
    request: Request,
    order_id: str,
    body: Annotated[ChangeOrder, Body(openapi_examples=ex.CHANGE_EXAMPLES)],
    caller: MerchantCaller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Replace the window (or service level), destination or recipient until the order is out for delivery.

    The planner re-plans it. A new destination must stay in the order's depot's service area.
    """
    idem = await idempotency(request, idempotency_key)
    return reply(await orders.change_order(order_id, body, caller.merchant, caller.deps, idem))


@router.post(
    "/v1/orders/{order_id}/cancel",
    tags=["orders"],
    response_model=OrderView,
    responses={200: ex.answer({**ex.ORDER_VIEW, "status": "cancelled", "version": 2}), **WRITE_PROBLEMS},
)
async def cancel_order(
    request: Request,
    order_id: str,
    caller: MerchantCaller,
    body: Annotated[CancelOrder | None, Body(openapi_examples=ex.CANCEL_EXAMPLES)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Cancel an order until it is out for delivery."""
    idem = await idempotency(request, idempotency_key)
    reason = body.reason if body is not None else None
    return reply(await orders.cancel_order(order_id, reason, caller.merchant, caller.deps, idem))


@router.get(
    "/v1/orders/{order_id}/history",
    tags=["orders"],
    response_model=list[StatusView],
    responses={200: ex.answer(ex.HISTORY), **problem_responses(401, 404, 429)},
)
async def read_history(order_id: str, caller: MerchantCaller) -> list[StatusView]:
    """Every status the order has had, oldest first."""
    return await orders.order_history(order_id, caller.merchant, caller.deps)


@router.get(
    "/v1/orders/{order_id}/tracking",
    tags=["orders"],
    response_model=TrackingView,
    responses={200: ex.answer(ex.TRACKING), **problem_responses(401, 404, 429)},
)
async def read_tracking(order_id: str, caller: MerchantCaller) -> TrackingView:
    """The customer's tracking page for this order (no login: the URL carries a 192-bit token)."""
    row = await orders.get_order(order_id, caller.merchant, caller.deps)
    return TrackingView(order_id=row.id, tracking_url=orders.view_of(row).tracking_url)


# ---------------------------------------------------------------------------------------------------------
# Ops: merchants and their keys


@router.post(
    "/v1/merchants",
    status_code=201,
    tags=["ops"],
    response_model=MerchantCreated,
    responses={201: ex.answer(ex.MERCHANT_CREATED, "Created"), **problem_responses(400, 401, 413, 422)},
)
async def create_merchant(
    body: Annotated[CreateMerchant, Body(openapi_examples={"merchant": {"value": ex.MERCHANT}})],
    deps: DepsDep,
    _: OpsAuth,
) -> MerchantCreated:
    """Register a merchant and issue its first API key (shown once)."""
    merchant, key_id, key = await handlers.create_merchant(body.name, deps)
    return MerchantCreated(id=merchant.id, name=merchant.name, api_key_id=key_id, api_key=key)


@router.post(
    "/v1/merchants/{merchant_id}/keys",
    status_code=201,
    tags=["ops"],
    response_model=KeyCreated,
    responses={201: ex.answer(ex.KEY_CREATED, "Created"), **problem_responses(400, 401, 404, 413, 422)},
)
async def create_key(
    merchant_id: str,
    body: Annotated[CreateKey, Body(openapi_examples={"key": {"value": ex.KEY}})],
    deps: DepsDep,
    _: OpsAuth,
) -> KeyCreated:
    """Issue another API key for a merchant (for rotation); several can be active at once."""
    key_id, key = await handlers.create_api_key(merchant_id, body.label, deps)
    return KeyCreated(id=key_id, api_key=key)


@router.delete(
    "/v1/merchants/{merchant_id}/keys/{key_id}",
    status_code=204,
    tags=["ops"],
    responses={204: {"description": "Revoked (also when it already was)"}, **problem_responses(401, 404)},
)
async def revoke_key(merchant_id: str, key_id: str, deps: DepsDep, _: OpsAuth) -> Response:
    """Revoke a key: refused at once by this replica, by the others within `auth_cache_seconds`."""
    await handlers.revoke_api_key(merchant_id, key_id, deps)
    return Response(status_code=204)
