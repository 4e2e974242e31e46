"""Composition root: the order-intake app on the shared service skeleton."""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from lastmile.common.bus import Bus, bind
from lastmile.common.clock import Clock
from lastmile.common.runtime import Runtime
from lastmile.common.web import service_app
from lastmile.order_intake import api, handlers
from lastmile.order_intake.handlers_orders import rejected
from lastmile.order_intake.schemas import CreateOrderBatch
from lastmile.order_intake.settings import IntakeSettings

ORDER_WRITES = {("POST", "/v1/orders")}  # the batch route validates its own body


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
    _count_invalid_orders(app)
    api.document(app, CreateOrderBatch)
    return app


def _count_invalid_orders(app: FastAPI) -> None:
    """Orders refused by schema validation count as rejected, like every other refusal."""
    render = app.exception_handlers[RequestValidationError]

    async def on_validation(request: Request, exc: Exception) -> Response:
        if (request.method, request.url.path) in ORDER_WRITES:
            rejected("validation-error")
        answer = render(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(RequestValidationError, on_validation)
