"""Planner's HTTP routes: fleet, plans and routes (ops token); a driver's route (device key)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lastmile.common.auth import OpsAuth, bearer_token, hash_secret
from lastmile.common.errors import NotFound, Unauthorized, problem_responses
from lastmile.common.ids import new_id
from lastmile.planner import domain, handlers
from lastmile.planner.handlers import Deps
from lastmile.planner.store import PlannerStore

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


async def get_deps(request: Request) -> Deps:  # async: FastAPI runs plain functions in a thread pool
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
router = APIRouter(tags=["fleet"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WaveIn(Strict):
    cutoff: str = Field(pattern=HHMM, examples=["20:00"])
    day_offset: int = Field(default=1, ge=0, le=7, description="0: plan the same day; 1: the next day")


class CreateDepot(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["Berlin Mitte"])
    lat: float = Field(ge=-90, le=90, examples=[52.52])
    lon: float = Field(ge=-180, le=180, examples=[13.40])
    timezone: str = Field(default="Europe/Berlin", examples=["Europe/Berlin"])
    service_radius_km: float = Field(default=15.0, gt=0, le=500)
    service_area: list[tuple[float, float]] = Field(default_factory=list, description="polygon of [lat, lon]")
    opens: str = Field(default="07:00", pattern=HHMM)
    closes: str = Field(default="21:00", pattern=HHMM)
    waves: list[WaveIn] = Field(default_factory=list, description="none: plan as orders arrive")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class BreakIn(Strict):
    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)
    duration_s: int = Field(default=1800, ge=0, le=4 * 3600)


class CreateVehicle(Strict):
    depot_id: str
    profile: Literal["van", "car", "cargo_bike", "bike"] = "van"
    capacity_parcels: int = Field(default=120, ge=1)
    capacity_kg: float = Field(default=800.0, gt=0)
    capacity_volume_l: float = Field(default=6000.0, gt=0)
    skills: list[str] = Field(default_factory=list)
    shift_start: str = Field(default="08:00", pattern=HHMM)
    shift_end: str = Field(default="18:00", pattern=HHMM)
    breaks: list[BreakIn] = Field(default_factory=list)
    fixed_cost: float = Field(default=0.0, ge=0)
    cost_per_hour: float = Field(default=25.0, ge=0)
    cost_per_km: float = Field(default=0.30, ge=0)
    max_stops: int | None = Field(default=None, ge=1)
    max_driving_s: int | None = Field(default=None, ge=60)
    max_distance_km: float | None = Field(default=None, gt=0)
    reloads: bool = True


class CreateDriver(Strict):
    name: str = Field(min_length=1, max_length=200)
    vehicle_id: str | None = None


class PlanRequest(Strict):
    depot_id: str
    date: date
    kind: Literal["on_demand", "replan"] = Field(
        default="on_demand",
        description="on_demand searches afresh (promises kept); replan starts from the routes",
    )


@router.post("/v1/depots", status_code=201, responses=problem_responses(401, 422))
async def create_depot(body: CreateDepot, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """Register a depot; order intake learns of it through depots.v1."""
    values = body.model_dump()
    values["service_area"] = tuple(tuple(p) for p in body.service_area)
    values["waves"] = tuple(domain.Wave(**w) for w in values["waves"])
    spec = domain.DepotSpec(id=new_id("dep"), **values)
    await handlers.create_depot(spec, deps)
    return {"id": spec.id, **spec.to_dict()}


@router.get("/v1/depots", responses=problem_responses(401))
async def list_depots(deps: DepsDep, _: OpsAuth) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        return [d.spec for d in await PlannerStore(session).depots()]


@router.post("/v1/vehicles", status_code=201, responses=problem_responses(401, 404, 422))
async def create_vehicle(body: CreateVehicle, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """Add a vehicle to a depot's fleet."""
    values = body.model_dump()
    values["skills"] = tuple(body.skills)
    values["breaks"] = tuple(domain.BreakSpec(**b) for b in values["breaks"])
    row = await handlers.create_vehicle(domain.VehicleSpec(id=new_id("veh"), **values), deps)
    return {**row.spec, "id": row.id}


@router.get("/v1/vehicles", responses=problem_responses(401))
async def list_vehicles(deps: DepsDep, _: OpsAuth, depot_id: str | None = None) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        return [{**v.spec, "id": v.id} for v in await PlannerStore(session).vehicles(depot_id)]


@router.post("/v1/drivers", status_code=201, responses=problem_responses(401, 404, 422))
async def create_driver(body: CreateDriver, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """A driver, and the vehicle they drive; their phone (device) is registered with the tracker."""
    row = await handlers.create_driver(new_id("drv"), body.name, body.vehicle_id, deps)
    return {"id": row.id, "name": row.name, "vehicle_id": row.vehicle_id}


@router.get("/v1/drivers", responses=problem_responses(401))
async def list_drivers(deps: DepsDep, _: OpsAuth) -> list[dict[str, Any]]:
    async with deps.db.read() as session:
        return [
            {"id": d.id, "name": d.name, "vehicle_id": d.vehicle_id}
            for d in await PlannerStore(session).drivers()
        ]


@router.post("/v1/plans", status_code=202, tags=["plans"], responses=problem_responses(401, 404, 422))
async def request_plan(body: PlanRequest, deps: DepsDep, _: OpsAuth, response: Response) -> dict[str, Any]:
    """Plan a depot's day now, in the background; poll `GET /v1/plans/{id}` until its status is done."""
    row = await handlers.request_plan(body.depot_id, body.date, body.kind, deps)
    response.headers["Location"] = f"/v1/plans/{row.id}"
    return row.to_dict()


@router.get("/v1/plans", tags=["plans"], responses=problem_responses(401))
async def list_plans(
    deps: DepsDep,
    _: OpsAuth,
    depot_id: str | None = None,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> list[dict[str, Any]]:
    """Plans and re-plans of a depot-day, newest first, with their KPIs and the stops they moved."""
    async with deps.db.read() as session:
        return [p.to_dict() for p in await PlannerStore(session).plans(depot_id, day)]


@router.get("/v1/plans/{plan_id}", tags=["plans"], responses=problem_responses(401, 404))
async def get_plan(plan_id: str, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """A plan's status (queued, running, done, failed), engine, solve time and KPIs."""
    async with deps.db.read() as session:
        row = await PlannerStore(session).plan(plan_id)
    if row is None:
        raise NotFound(f"Plan {plan_id} not found")
    return row.to_dict()


@router.get("/v1/routes", tags=["plans"], responses=problem_responses(401))
async def list_routes(
    deps: DepsDep,
    _: OpsAuth,
    depot_id: str | None = None,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> list[dict[str, Any]]:
    """Routes by depot and day, with their stops, planned times and promised windows."""
    async with deps.db.read() as session:
        routes = await PlannerStore(session).routes(depot_id, day)
    return [{**r.snapshot, "status": r.status} for r in routes]


@router.get("/v1/drivers/{vehicle_id}/route", tags=["drivers"], responses=problem_responses(401, 404))
async def driver_route(
    vehicle_id: str, request: Request, deps: DepsDep, day: Annotated[date | None, Query(alias="date")] = None
) -> dict[str, Any]:
    """The route of the driver's vehicle (today, depot time, unless `date` says otherwise), with the device key
    as `Authorization: Bearer`. A device sees only its own vehicle's route.

    A stop done (by this vehicle or another) or cancelled carries its `status` at once, before the next version
    of the route: a re-plan that moved a stop can cross a driver's result, and the second driver then drove to
    a parcel already delivered."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("A device key is required")
    async with deps.db.read() as session:
        store = PlannerStore(session)
        device = await store.device_by_key(hash_secret(token))
        if device is None:
            raise Unauthorized("Unknown or revoked device key")
        vehicle = await store.vehicle(vehicle_id)
        if device.vehicle_id != vehicle_id or vehicle is None:
            raise NotFound(f"Vehicle {vehicle_id} not found")
        depot = await store.depot(vehicle.depot_id)
        zone = ZoneInfo(depot.spec["timezone"]) if depot else ZoneInfo("UTC")
        route = await store.route_for(vehicle_id, day or deps.clock.now().astimezone(zone).date())
        if route is None or route.status == "cancelled":
            raise NotFound("No route for this vehicle on that day")
        stops = route.snapshot.get("stops", [])
        closed = await store.closed_jobs(s["order_id"] for s in stops)
    stops = [{**s, "status": closed[s["order_id"]]} if s["order_id"] in closed else s for s in stops]
    return {**route.snapshot, "stops": stops, "status": route.status}
