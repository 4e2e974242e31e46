"""Tracker's HTTP routes: devices (ops), pings and stop results (drivers' phones)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from lastmile.common.auth import OpsAuth, bearer_token
from lastmile.common.errors import Unprocessable, problem_responses
from lastmile.tracker import domain, handlers
from lastmile.tracker.handlers import Deps, Device


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def device_auth(request: Request, deps: DepsDep) -> Device:
    return await handlers.authenticate_device(bearer_token(request), deps)


DeviceAuth = Annotated[Device, Depends(device_auth)]
router = APIRouter()


class RegisterDevice(BaseModel):
    vehicle_id: str = Field(min_length=1, max_length=40)
    name: str = Field(default="", max_length=100)


class DeviceRegistered(BaseModel):
    id: str
    vehicle_id: str
    device_key: str = Field(description="Shown once; only its hash is stored")


class PingBatch(BaseModel):
    pings: list[domain.PingIn] = Field(min_length=1)


class StopOut(BaseModel):
    order_id: str
    status: str
    completed_at: datetime | None


@router.post("/v1/devices", status_code=201, tags=["devices"], responses=problem_responses(401, 422))
async def register_device(body: RegisterDevice, deps: DepsDep, _: OpsAuth) -> DeviceRegistered:
    """Register a driver's phone for a vehicle and issue its key."""
    row, key = await handlers.register_device(body.vehicle_id, body.name, deps)
    return DeviceRegistered(id=row.id, vehicle_id=row.vehicle_id, device_key=key)


@router.delete(
    "/v1/devices/{device_id}", status_code=204, tags=["devices"], responses=problem_responses(401, 404)
)
async def revoke_device(device_id: str, deps: DepsDep, _: OpsAuth) -> Response:
    """Revoke a device: its key stops working at once."""
    await handlers.revoke_device(device_id, deps)
    return Response(status_code=204)


@router.post("/v1/pings", status_code=202, tags=["drivers"], responses=problem_responses(401, 413, 422))
async def post_pings(body: PingBatch, device: DeviceAuth, deps: DepsDep) -> dict[str, int]:
    """A batch of positions from one device; answers how many were accepted and why others were not."""
    if len(body.pings) > deps.settings.max_batch:
        raise Unprocessable(f"At most {deps.settings.max_batch} pings per batch", code="batch-too-large")
    return await handlers.record_pings(body.pings, device, deps)


@router.post(
    "/v1/stops/{order_id}/complete", tags=["drivers"], responses=problem_responses(401, 404, 409, 422)
)
async def complete_stop(
    order_id: str, body: domain.CompleteStop, device: DeviceAuth, deps: DepsDep
) -> StopOut:
    """The driver's result at a stop: delivered (with proof) or failed (with a reason)."""
    stop = await handlers.complete_stop(order_id, body, device, deps)
    return StopOut(order_id=stop.order_id, status=stop.status, completed_at=stop.completed_at)
