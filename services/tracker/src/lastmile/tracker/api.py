"""Tracker's HTTP routes for devices (ops) and drivers' phones: pings, stop results, starting and finishing a
route. The customers' and ops' read routes are in api_views."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from lastmile.common.auth import OpsAuth, bearer_token
from lastmile.common.errors import (
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    field_problems,
    problem_responses,
)
from lastmile.tracker import domain, handlers, handlers_stops
from lastmile.tracker.deps import Deps, Device
from lastmile.tracker.handlers_pings import Item, count_rejected


async def get_deps(request: Request) -> Deps:  # async: FastAPI runs plain functions in a thread pool
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def device_auth(request: Request, deps: DepsDep) -> Device:
    device = await handlers.authenticate_device(bearer_token(request), deps)
    wait = deps.rates.take(device.id)
    if wait > 0:
        raise TooManyRequests(max(1, math.ceil(wait)))
    return device


DeviceAuth = Annotated[Device, Depends(device_auth)]
router = APIRouter()


class RegisterDevice(BaseModel):
    vehicle_id: str = Field(min_length=1, max_length=40)
    name: str = Field(default="", max_length=100)


class DeviceRegistered(BaseModel):
    id: str
    vehicle_id: str
    device_key: str = Field(description="Shown once; only its hash is stored")


class StopOut(BaseModel):
    order_id: str
    status: str
    completed_at: datetime | None


class RouteOut(BaseModel):
    route_id: str
    vehicle_id: str
    version: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None


@router.post("/v1/devices", status_code=201, tags=["devices"], responses=problem_responses(401, 422))
async def register_device(body: RegisterDevice, deps: DepsDep, _: OpsAuth) -> DeviceRegistered:
    """Register a driver's phone for a vehicle and issue its key."""
    row, key = await handlers.register_device(body.vehicle_id, body.name, deps)
    return DeviceRegistered(id=row.id, vehicle_id=row.vehicle_id, device_key=key)


@router.delete(
    "/v1/devices/{device_id}", status_code=204, tags=["devices"], responses=problem_responses(401, 404)
)
async def revoke_device(device_id: str, deps: DepsDep, _: OpsAuth) -> Response:
    """Revoke a device: its key stops working at once on this replica, within seconds on the others."""
    await handlers.revoke_device(device_id, deps)
    return Response(status_code=204)


class _Batch(BaseModel):
    pings: list[domain.PingIn]


class _RawBatch(BaseModel):
    pings: list[Any] = Field(min_length=1)


PING_BATCH = TypeAdapter(_Batch)
RAW_BATCH = TypeAdapter(_RawBatch)
PING_BATCH_SCHEMA = {
    "type": "object",
    "required": ["pings"],
    "properties": {
        "pings": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "description": "Positions; one that does not validate is counted, not fatal to the others.",
            "items": domain.PingIn.model_json_schema(),
        }
    },
}


@router.post(
    "/v1/pings",
    status_code=202,
    tags=["drivers"],
    responses=problem_responses(401, 413, 422, 429),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": PING_BATCH_SCHEMA}}}
    },
)
async def post_pings(request: Request, deps: DepsDep) -> dict[str, int]:
    """A batch of positions from one device (`Authorization: Bearer <device key>`), stored once this answers.
    Counts each ping's outcome: accepted (`ok`, `late`: older than the live position, `suspect`: an impossible
    jump, kept out of ETAs) or refused (`duplicate`, `future`, `too_old`, `invalid`, `out_of_range`, `no_fix`)."""
    items = _parse(await request.body())
    try:
        device = await device_auth(request, deps)
    except (Unauthorized, TooManyRequests) as exc:
        count_rejected("unauthorized" if isinstance(exc, Unauthorized) else "rate_limited", len(items))
        raise
    if len(items) > deps.settings.max_batch:
        raise Unprocessable(f"At most {deps.settings.max_batch} pings per batch", code="batch-too-large")
    return await deps.ingestor.submit(device, items, "batch")


def _parse(body: bytes) -> list[Item]:
    """Every ping, or why it is refused. All valid (the usual case): parsed and validated in one pass."""
    try:
        return list(PING_BATCH.validate_json(body).pings)
    except ValidationError:
        pass
    try:
        raw = RAW_BATCH.validate_json(body).pings
    except ValidationError as exc:
        raise Unprocessable(
            'The body must be {"pings": [...]} with at least one ping',
            code="validation-error",
            errors=field_problems(exc.errors()),
        ) from exc
    items: list[Item] = []
    for one in raw:
        try:
            items.append(domain.PingIn.model_validate(one))
        except ValidationError as exc:
            items.append(domain.rejection_for(exc.errors()))  # type: ignore[arg-type]
    return items


@router.post(
    "/v1/stops/{order_id}/complete", tags=["drivers"], responses=problem_responses(401, 404, 409, 413, 422)
)
async def complete_stop(
    order_id: str, body: domain.CompleteStop, device: DeviceAuth, deps: DepsDep
) -> StopOut:
    """The driver's result at a stop: delivered (with proof: recipient's name, optionally a photo and a
    signature, where and when) or failed (with a reason)."""
    stop = await handlers_stops.complete_stop(order_id, body, device, deps)
    return StopOut(order_id=stop.order_id, status=stop.status, completed_at=stop.completed_at)


@router.post("/v1/routes/{route_id}/start", tags=["drivers"], responses=problem_responses(401, 404, 409))
async def start_route(route_id: str, device: DeviceAuth, deps: DepsDep) -> RouteOut:
    """The driver sets off: every stop is out for delivery (the first position does the same)."""
    return _route_out(await handlers_stops.start_route(route_id, device, deps))


@router.post("/v1/routes/{route_id}/finish", tags=["drivers"], responses=problem_responses(401, 404, 409))
async def finish_route(route_id: str, device: DeviceAuth, deps: DepsDep) -> RouteOut:
    """The driver is done: stops without a result are failed as not attempted, for the planner to re-plan."""
    return _route_out(await handlers_stops.finish_route(route_id, device, deps))


def _route_out(route: Any) -> RouteOut:
    return RouteOut(
        route_id=route.id,
        vehicle_id=route.vehicle_id,
        version=route.version,
        status=route.status,
        started_at=route.started_at,
        finished_at=route.finished_at,
    )


@router.get(
    "/v1/stops/{order_id}/proof/{kind}",
    tags=["ops"],
    responses={**problem_responses(401, 404), 200: {"content": {"image/*": {}}}},
)
async def proof_image(
    order_id: str, kind: Literal["photo", "signature"], deps: DepsDep, _: OpsAuth
) -> Response:
    """The photo or signature kept with a delivered stop."""
    row = await handlers_stops.proof_image(order_id, kind, deps)
    return Response(row.data, media_type=row.content_type, headers={"Cache-Control": "private, no-store"})
