"""Composition root: the order-intake app on the shared service skeleton."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.middleware import Middleware

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.order_intake import api, handlers
from lastmile.order_intake.fastpath import CreateOrderFastPath
from lastmile.order_intake.schemas import CreateOrder, CreateOrderBatch
from lastmile.order_intake.settings import IntakeSettings


def create_app(settings: IntakeSettings, *, bus: Bus | None = None, clock: Clock | None = None) -> FastAPI:
    def make_deps(runtime: Runtime) -> handlers.Deps:
        return handlers.Deps(db=runtime.db, clock=runtime.clock, settings=settings)

    app = service_app(
        settings,
        title="Lastmile order intake",
        description="The merchant API: orders, time windows, delivery options and returns.",
        routers=[api.router],
        migrations=Path(__file__).parent / "migrations",
        make_deps=make_deps,
        subscriptions=lambda deps: bind(handlers.SUBSCRIPTIONS, deps),
        background=lambda deps: [deps.writer, handlers.IdempotencyJanitor(deps)],
        bus=bus,
        clock=clock,
        body_limits={"/v1/orders/batch": settings.batch_max_body_bytes},
    )
    api.document(app, CreateOrder, CreateOrderBatch)
    # Innermost of the app's own middleware (add_middleware would put it outside the shared edge).
    app.user_middleware.append(Middleware(CreateOrderFastPath))
    return app
