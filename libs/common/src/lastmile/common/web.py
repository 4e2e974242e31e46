"""The HTTP edge every service shares: problem+json errors, request metrics, body limits, health and metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lastmile.common import metrics
from lastmile.common.bus import Bus, EventHandler
from lastmile.common.clock import Clock
from lastmile.common.errors import PROBLEM_JSON, LastmileError, install_problem_handlers
from lastmile.common.events import Payload
from lastmile.common.runtime import Runtime
from lastmile.common.settings import CommonSettings


class PayloadTooLarge(LastmileError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class EdgeMiddleware:
    """Pure ASGI (no per-request task, unlike BaseHTTPMiddleware): metrics per route template, body limits."""

    def __init__(self, app: ASGIApp, service: str, max_body: int, limits: Mapping[str, int]) -> None:
        self.app, self.service, self.max_body, self.limits = app, service, max_body, dict(limits)
        # (method, route, status) → its request counter and (method, route) latency histogram: labels() takes a
        # lock and builds its key on every call, a few microseconds a request
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, send, limit)
            return
        started = time.perf_counter()
        status = [500]
        seen = [0]
        # A body without Content-Length that grows past the limit: whatever the app makes of the error raised
        # while it reads (FastAPI's own body parsing turns it into a 400), the client is answered 413.
        exceeded, answered = [False], [False]

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    exceeded[0] = True
                    raise PayloadTooLarge(f"The body exceeds {limit} bytes")
            return message

        async def observed_send(message: Message) -> None:
            if exceeded[0]:
                if not answered[0] and message["type"] == "http.response.start":
                    answered[0], status[0] = True, 413
                    await _too_large(scope, send, limit)
                return
            if message["type"] == "http.response.start":
                answered[0], status[0] = True, message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, observed_send)
        except PayloadTooLarge:
            if answered[0]:
                raise
            status[0] = 413
            await _too_large(scope, send, limit)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope.get("method", "GET"), template, status[0])
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (
                    metrics.HTTP_REQUESTS.labels(self.service, key[0], template, str(key[2])),
                    metrics.HTTP_LATENCY.labels(self.service, key[0], template),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    body = (
        PayloadTooLarge(f"The body exceeds {limit} bytes")
        .problem(scope.get("path"))
        .model_dump_json(exclude_none=True)
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


ops_router = APIRouter(tags=["health"])


@ops_router.get("/healthz", summary="Alive")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing of its dependencies (that is /readyz)."""
    return {"status": "ok"}


@ops_router.get("/readyz", summary="Ready", responses={503: {"description": "A dependency is down"}})
async def readyz(request: Request) -> JSONResponse:
    """Database and bus reachable; 503 with the reason for each one that is not."""
    checks = await request.app.state.runtime.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@ops_router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render(request.app.state.runtime.service)
    return Response(body, media_type=content_type)


def build_app(
    *,
    service: str,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], Any],
    max_body_bytes: int,
    body_limits: Mapping[str, int] | None = None,
    version: str = "0.1.0",
    **fastapi_args: Any,
) -> FastAPI:
    """A FastAPI app with Lastmile's edge; the service adds its routers."""
    # FastAPI's own OpenTelemetry hooks ask the environment on every request; our metrics are Prometheus'.
    fastapi_args.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False})
    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan, **fastapi_args)
    install_problem_handlers(app)
    app.add_middleware(EdgeMiddleware, service=service, max_body=max_body_bytes, limits=body_limits or {})
    app.include_router(ops_router)
    return app


D = TypeVar("D")


def service_app(
    settings: CommonSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    migrations: Path,
    make_deps: Callable[[Runtime], D],
    subscriptions: Callable[[D], Mapping[type[Payload], EventHandler]],
    bus: Bus | None = None,
    clock: Clock | None = None,
    background: Callable[[D], Sequence[Background]] = lambda deps: (),
    body_limits: Mapping[str, int] | None = None,
    inbox_exempt: frozenset[type[Payload]] = frozenset(),
) -> FastAPI:
    """The composition every service shares: runtime (database, bus, relay, consumers), deps, routers.

    `background` names the service's own long-running tasks (started after the runtime, stopped before it).
    `inbox_exempt` is passed to the service's subscription (see `Subscription`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, bus=bus, clock=clock)
        deps = make_deps(runtime)
        app.state.runtime, app.state.deps = runtime, deps
        subscription = runtime.subscription(subscriptions(deps), inbox_exempt=inbox_exempt)
        await runtime.start(migrations, [subscription])
        tasks = list(background(deps))
        try:
            for task in tasks:
                await task.start()
            yield
        finally:
            for task in reversed(tasks):
                await task.stop()
            await runtime.stop()

    app = build_app(
        service=settings.service,
        title=title,
        description=description,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        body_limits=body_limits,
    )
    for router in routers:
        app.include_router(router)
    return app


class Background(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...
