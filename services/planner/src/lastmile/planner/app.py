"""Composition root: the planner app, its solver and its re-planner, on the shared service skeleton."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.planner import api, handlers
from lastmile.planner.settings import PlannerSettings
from lastmile.planner.solver import VroomSolver
from lastmile.planner.travel import CoordinateTravelTimes


def create_app(settings: PlannerSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> handlers.Deps:
        solver = VroomSolver(
            CoordinateTravelTimes(detour=settings.detour_factor),
            exploration=settings.solver_exploration,
            threads=settings.solver_threads,
        )
        deps = handlers.Deps(db=runtime.db, clock=runtime.clock, settings=settings, solver=solver)
        deps.replanner = handlers.Replanner(deps)
        return deps

    return service_app(
        settings,
        title="Lastmile planner",
        description="Fleet and depots; routes planned and re-planned with VROOM.",
        routers=[api.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        background=lambda deps: [deps.replanner],
        bus=bus,
        clock=clock,
    )
