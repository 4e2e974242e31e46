"""Composition root: the tracker app on the shared service skeleton, with its OsmAnd listener beside it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.ratelimit import RateLimiter
from lastmile.common.runtime import Runtime
from lastmile.common.web import Background, service_app
from lastmile.tracker import api, api_views, handlers
from lastmile.tracker.deps import Changes, Deps, DeviceCache, PlanCache, ProgressCache
from lastmile.tracker.handlers_pings import Housekeeper, Ingestor
from lastmile.tracker.osmand import OsmAndListener
from lastmile.tracker.settings import TrackerSettings


def create_app(settings: TrackerSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> Deps:
        changes = Changes()
        return Deps(
            db=runtime.db,
            clock=runtime.clock,
            settings=settings,
            limits=settings.limits(),
            eta=settings.eta_config(),
            devices=DeviceCache(settings.device_cache_s),
            changes=changes,
            plans=PlanCache(),
            progress=ProgressCache(),
            rates=RateLimiter(settings.device_rate_per_s, settings.device_burst),
            ingestor=Ingestor(runtime.db, runtime.clock, settings, changes),
        )

    def background(deps: Deps) -> Sequence[Background]:
        app.state.osmand = OsmAndListener(deps)  # its port, once started: app.state.osmand.port
        app.state.housekeeper = Housekeeper(deps.db, deps.clock, settings)
        return [deps.ingestor, app.state.housekeeper, handlers.DeviceKeys(deps), app.state.osmand]

    app = service_app(
        settings,
        title="Lastmile tracker",
        description="GPS ingest (our API and the OsmAnd protocol of Traccar Client), arrivals, live ETAs, "
        "proof of delivery and the customer tracking page.",
        routers=[api.router, api_views.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        inbox_exempt=handlers.INBOX_EXEMPT,
        bus=bus,
        clock=clock,
        background=background,
    )
    return app
