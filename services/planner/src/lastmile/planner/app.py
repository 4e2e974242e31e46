"""Composition root: the planner app, its travel times, its solver process and its background planners."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import Background, service_app
from lastmile.planner import api, handlers
from lastmile.planner.replanner import Replanner, WaveScheduler
from lastmile.planner.settings import PlannerSettings
from lastmile.planner.solver import SharedSolver, SolverPool
from lastmile.planner.travel import (
    CachedTravelTimes,
    CoordinateTravelTimes,
    OsrmTravelTimes,
    TravelTimes,
    ValhallaTravelTimes,
)

OSRM_PROFILES = {"van": "driving", "car": "driving", "cargo_bike": "cycling", "bike": "cycling"}
VALHALLA_COSTING = {"van": "auto", "car": "auto", "cargo_bike": "bicycle", "bike": "bicycle"}


def travel_times(settings: PlannerSettings) -> TravelTimes:
    inner: TravelTimes
    if settings.travel == "osrm":
        inner = OsrmTravelTimes(settings.travel_url, OSRM_PROFILES, block=settings.travel_block)
    elif settings.travel == "valhalla":
        inner = ValhallaTravelTimes(settings.travel_url, VALHALLA_COSTING, block=settings.travel_block)
    else:
        inner = CoordinateTravelTimes(detour=settings.detour_factor)
    return CachedTravelTimes(inner, size=settings.travel_cache)


@dataclass
class _Closing:
    """Closes the solver's process and the travel client when the app stops."""

    deps: handlers.Deps

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.deps.solver.close()
        await self.deps.travel.close()


def create_app(settings: PlannerSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> handlers.Deps:
        solver = (
            SolverPool(settings.solver_processes, settings.solver_nice, settings.solver_deadline_s)
            if settings.solver_processes
            else SharedSolver(settings.solver_deadline_s)
        )
        deps = handlers.Deps(
            db=runtime.db,
            clock=runtime.clock,
            settings=settings,
            solver=solver,
            travel=travel_times(settings),
        )
        deps.replanner = Replanner(deps)
        return deps

    def background(deps: handlers.Deps) -> list[Background]:
        replanner = deps.replanner
        assert isinstance(replanner, Replanner)
        return [_Closing(deps), replanner, WaveScheduler(deps)]

    return service_app(
        settings,
        title="Lastmile planner",
        description="Fleet and depots; routes planned with VROOM and PyVRP, re-planned through the day.",
        routers=[api.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        inbox_exempt=handlers.INBOX_EXEMPT,
        background=background,
        bus=bus,
        clock=clock,
    )
