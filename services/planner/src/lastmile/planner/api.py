"""Planner's HTTP routes (ops): depots, vehicles, plans and routes."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lastmile.common.auth import OpsAuth
from lastmile.common.errors import NotFound, problem_responses
from lastmile.common.ids import new_id
from lastmile.planner import domain, handlers
from lastmile.planner.handlers import Deps
from lastmile.planner.store import PlannerStore


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
router = APIRouter(tags=["fleet"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateDepot(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["Berlin Mitte"])
    lat: float = Field(ge=-90, le=90, examples=[52.52])
    lon: float = Field(ge=-180, le=180, examples=[13.40])
    timezone: str = Field(default="Europe/Berlin", examples=["Europe/Berlin"])
    service_radius_km: float = Field(default=15.0, gt=0, le=500)
    opens: str = Field(default="07:00", pattern=r"^\d{2}:\d{2}$")
    closes: str = Field(default="21:00", pattern=r"^\d{2}:\d{2}$")


class CreateVehicle(Strict):
    depot_id: str
    profile: str = Field(default="van", examples=["van", "car", "cargo_bike"])
    capacity_parcels: int = Field(default=120, ge=1)
    capacity_kg: float = Field(default=800.0, gt=0)
    skills: list[str] = Field(default_factory=list)
    shift_start: str = Field(default="08:00", pattern=r"^\d{2}:\d{2}$")
    shift_end: str = Field(default="18:00", pattern=r"^\d{2}:\d{2}$")


class PlanRequest(Strict):
    depot_id: str
    date: date


@router.post("/v1/depots", status_code=201, responses=problem_responses(401, 422))
async def create_depot(body: CreateDepot, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """Register a depot; order intake learns of it through depots.v1."""
    spec = domain.DepotSpec(id=new_id("dep"), **body.model_dump())
    await handlers.create_depot(spec, deps)
    return spec.__dict__


@router.get("/v1/depots", responses=problem_responses(401))
async def list_depots(deps: DepsDep, _: OpsAuth) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        return [d.spec for d in await PlannerStore(session).depots()]


@router.post("/v1/vehicles", status_code=201, responses=problem_responses(401, 404, 422))
async def create_vehicle(body: CreateVehicle, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """Add a vehicle to a depot's fleet."""
    spec = domain.VehicleSpec(id=new_id("veh"), **{**body.model_dump(), "skills": tuple(body.skills)})
    row = await handlers.create_vehicle(spec, deps)
    return {"id": row.id, **row.spec}


@router.get("/v1/vehicles", responses=problem_responses(401))
async def list_vehicles(deps: DepsDep, _: OpsAuth, depot_id: str | None = None) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        return [{"id": v.id, **v.spec} for v in await PlannerStore(session).vehicles(depot_id)]


@router.post("/v1/plans", status_code=202, tags=["plans"], responses=problem_responses(401, 404))
async def request_plan(body: PlanRequest, deps: DepsDep, _: OpsAuth) -> dict[str, str]:
    """Plan (or re-plan) a depot's day now; the result arrives as routes.v1 and deliveries.v1 events."""
    async with deps.db.read() as session:
        if await PlannerStore(session).depot(body.depot_id) is None:
            raise NotFound(f"Depot {body.depot_id} not found")
    deps.replanner.request(body.depot_id, body.date)
    return {"status": "queued", "depot_id": body.depot_id, "date": body.date.isoformat()}


@router.get("/v1/routes", tags=["plans"], responses=problem_responses(401))
async def list_routes(
    deps: DepsDep,
    _: OpsAuth,
    depot_id: str | None = None,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> list[dict[str, Any]]:
    """Routes by depot and day, with their stops and planned times."""
    async with deps.db.read() as session:
        routes = await PlannerStore(session).routes(depot_id, day)
    return [{**r.snapshot, "status": r.status} for r in routes]
