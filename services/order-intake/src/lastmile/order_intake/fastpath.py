"""`POST /v1/orders`, the busiest route, answered without FastAPI's per-request machinery.

The route stays declared in `api.py` (its OpenAPI document, examples and problem responses are unchanged); this
ASGI middleware, inside the shared edge (request metrics per route, body limits), answers it first with the same
steps as `api.create_order`: authenticate the merchant's key, apply its rate limit, read the body and the
`Idempotency-Key`, validate, accept, and render errors as the app's problem handlers do. What it skips is
FastAPI's routing, request object and dependency solving, and Starlette's exception middleware: about a fifth of
the CPU of a single creation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lastmile.common.db import is_transient
from lastmile.common.errors import PROBLEM_BASE, LastmileError, Problem, ServiceUnavailable, problem_response
from lastmile.order_intake import handlers
from lastmile.order_intake import handlers_orders as orders
from lastmile.order_intake.api import reply
from lastmile.order_intake.handlers import Deps
from lastmile.order_intake.idempotency import Idempotency

log = logging.getLogger(__name__)

PATH = "/v1/orders"


@dataclass(frozen=True)
class _Route:
    path: str


ROUTE = _Route(PATH)


class CreateOrderFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE  # what the edge labels its metrics with, as FastAPI's routing would set it
        try:
            response = await create_order(scope, receive)
        except LastmileError as exc:
            response = problem_response(exc.problem(Request(scope).url.path), exc.headers)
        except Disconnected:
            return
        except Exception as exc:  # as the app's handler of unexpected errors answers them
            response = unexpected(scope, exc)
        await response(scope, receive, send)


class Disconnected(Exception):
    """The client went away before sending its whole body."""


async def create_order(scope: Scope, receive: Receive) -> Response:
    deps: Deps = scope["app"].state.deps
    authorization, idempotency_key = _headers(scope)
    try:
        merchant = await handlers.authenticate_merchant(_bearer(authorization), deps)
        deps.limiter.check(merchant.id)
        body = await _body(receive)
        idem = Idempotency.of(idempotency_key, "POST", scope["path"], body)
        cmd = orders.parse_order(body)
        return reply(await orders.accept_order(cmd, merchant, deps, idem))
    except LastmileError as exc:  # as api.counting_rejections
        orders.rejected(exc.code)
        raise


def _headers(scope: Scope) -> tuple[str, str | None]:
    """Authorization and Idempotency-Key (the first of each, as Starlette's `Headers.get` gives them)."""
    authorization: str = ""
    key: str | None = None
    found_authorization = False
    for name, value in scope["headers"]:
        if name == b"authorization" and not found_authorization:
            authorization, found_authorization = value.decode("latin-1"), True
        elif name == b"idempotency-key" and key is None:
            key = value.decode("latin-1")
    return authorization, key


def _bearer(header: str) -> str | None:
    """As `lastmile.common.auth.bearer_token`."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def unexpected(scope: Scope, exc: Exception) -> Response:
    """What `lastmile.common.errors.install_problem_handlers` answers to an error that is not a LastmileError."""
    path = Request(scope).url.path
    if is_transient(exc):  # the database is away: nothing was committed, so the client may retry
        log.warning("dependency unavailable on POST %s: %s", path, exc)
        unavailable = ServiceUnavailable("A dependency is unavailable; nothing was stored. Retry shortly.")
        return problem_response(unavailable.problem(path), {"Retry-After": "5"})
    log.exception("unhandled error on POST %s", path)
    problem = Problem(
        type=PROBLEM_BASE + "internal", title="Internal error", status=500, instance=path, code="internal"
    )
    return problem_response(problem)
