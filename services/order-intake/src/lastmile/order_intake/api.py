"""Order intake's HTTP routes: parse, authenticate, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from lastmile.common.auth import OpsAuth, bearer_token
from lastmile.common.errors import problem_responses
from lastmile.order_intake import handlers
from lastmile.order_intake.domain import CreateOrder
from lastmile.order_intake.handlers import Deps, Merchant
from lastmile.order_intake.store import OrderRow


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def merchant_auth(request: Request, deps: DepsDep) -> Merchant:
    return await handlers.authenticate_merchant(bearer_token(request), deps)


MerchantAuth = Annotated[Merchant, Depends(merchant_auth)]

router = APIRouter()

# ---------------------------------------------------------------------------------------------------------
# Ops: merchants and their keys


class CreateMerchant(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Acme Books"])


class MerchantCreated(BaseModel):
    id: str
    name: str
    api_key_id: str
    api_key: str = Field(description="Shown once; only its hash is stored")


class KeyCreated(BaseModel):
    id: str
    api_key: str


class CreateKey(BaseModel):
    label: str = Field(default="", max_length=100)


@router.post(
    "/v1/merchants",
    status_code=201,
    tags=["ops"],
    responses=problem_responses(401, 422),
    response_model=MerchantCreated,
)
async def create_merchant(body: CreateMerchant, deps: DepsDep, _: OpsAuth) -> MerchantCreated:
    """Register a merchant and issue its first API key."""
    merchant, key_id, key = await handlers.create_merchant(body.name, deps)
    return MerchantCreated(id=merchant.id, name=merchant.name, api_key_id=key_id, api_key=key)


@router.post(
    "/v1/merchants/{merchant_id}/keys", status_code=201, tags=["ops"], responses=problem_responses(401, 404)
)
async def create_key(merchant_id: str, body: CreateKey, deps: DepsDep, _: OpsAuth) -> KeyCreated:
    """Issue another API key for a merchant (for rotation)."""
    key_id, key = await handlers.create_api_key(merchant_id, body.label, deps)
    return KeyCreated(id=key_id, api_key=key)


@router.delete(
    "/v1/merchants/{merchant_id}/keys/{key_id}",
    status_code=204,
    tags=["ops"],
    responses=problem_responses(401, 404),
)
async def revoke_key(merchant_id: str, key_id: str, deps: DepsDep, _: OpsAuth) -> Response:
    """Revoke a key; requests with it are refused from now on."""
    await handlers.revoke_api_key(merchant_id, key_id, deps)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------------------
# Merchants: orders


class OrderOut(BaseModel):
    id: str
    reference: str
    status: str
    kind: str
    depot_id: str
    version: int
    tracking_url: str
    created_at: datetime
    updated_at: datetime
    order: dict[str, Any] = Field(description="The order as accepted")


class StatusOut(BaseModel):
    status: str
    at: datetime
    detail: dict[str, Any]


def order_out(row: OrderRow) -> OrderOut:
    snap = row.snapshot
    order = {
        k: v
        for k, v in snap.items()
        if k not in ("tracking_token", "merchant_id", "merchant_name", "version")
    }
    return OrderOut(
        id=row.id,
        reference=row.reference,
        status=row.status,
        kind=snap["kind"],
        depot_id=row.depot_id,
        version=row.version,
        tracking_url=snap["tracking_url"],
        created_at=row.created_at,
        updated_at=row.updated_at,
        order=order,
    )


EXAMPLE_ORDER = {
    "reference": "A-1001",
    "recipient": {"name": "Ada Lovelace", "phone": "+447700900123", "email": "ada@example.com"},
    "destination": {"lat": 52.5208, "lon": 13.4095},
    "time_windows": [{"start": "2026-12-01T10:00:00+01:00", "end": "2026-12-01T18:00:00+01:00"}],
    "parcels": [{"count": 1, "weight_kg": 2.5}],
}


@router.post("/v1/orders", status_code=201, tags=["orders"], responses=problem_responses(401, 409, 413, 422))
async def create_order(
    body: Annotated[CreateOrder, Field(examples=[EXAMPLE_ORDER])], merchant: MerchantAuth, deps: DepsDep
) -> OrderOut:
    """Accept one order. It is stored before this answers; planning follows asynchronously."""
    return order_out(await handlers.accept_order(body, merchant, deps))


@router.get("/v1/orders/{order_id}", tags=["orders"], responses=problem_responses(401, 404))
async def read_order(order_id: str, merchant: MerchantAuth, deps: DepsDep) -> OrderOut:
    """One of the merchant's orders with its current status."""
    return order_out(await handlers.get_order(order_id, merchant, deps))


@router.get("/v1/orders/{order_id}/history", tags=["orders"], responses=problem_responses(401, 404))
async def read_history(order_id: str, merchant: MerchantAuth, deps: DepsDep) -> list[StatusOut]:
    """Every status the order has had, oldest first."""
    rows = await handlers.order_history(order_id, merchant, deps)
    return [StatusOut(status=r.status, at=r.at, detail=r.detail) for r in rows]
