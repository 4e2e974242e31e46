"""Composition root: the tracker app on the shared service skeleton."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.tracker import api, handlers
from lastmile.tracker.settings import TrackerSettings


def create_app(settings: TrackerSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> handlers.Deps:
        return handlers.Deps(db=runtime.db, clock=runtime.clock, settings=settings)

    return service_app(
        settings,
        title="Lastmile tracker",
        description="GPS ingest, arrivals, live ETAs, proof of delivery and the customer tracking page.",
        routers=[api.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        bus=bus,
        clock=clock,
    )
