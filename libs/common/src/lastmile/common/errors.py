"""One error class that carries its HTTP status, rendered as RFC 9457 problem+json by one set of handlers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://lastmile.dev/problems/"


class FieldProblem(BaseModel):
    pointer: str = Field(description="JSON pointer to the offending field, e.g. `#/recipient/phone`")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; `errors` names every bad field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str | None = None
    errors: list[FieldProblem] | None = None


class LastmileError(Exception):
    """Raise a subclass (or this with arguments) from domain or handlers; the API renders it."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title or self.title)
        self.detail = detail
        self.status = status or self.status
        self.code = code or self.code
        self.title = title or self.title
        self.errors = list(errors) if errors else None
        self.headers = headers

    def problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_BASE + self.code,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            code=self.code,
            errors=self.errors,
        )


class NotFound(LastmileError):
    status, code, title = 404, "not-found", "Not found"


class Unauthorized(LastmileError):
    status, code, title = 401, "unauthorized", "Missing or invalid credentials"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="lastmile"'})


class Forbidden(LastmileError):
    status, code, title = 403, "forbidden", "Not allowed"


class Conflict(LastmileError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(LastmileError):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class TooManyRequests(LastmileError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"Rate limit exceeded; retry after {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


class ServiceUnavailable(LastmileError):
    status, code, title = 503, "unavailable", "Service unavailable"


def pointer(loc: Sequence[Any]) -> str:
    """`('body', 'recipient', 'phone')` → `#/recipient/phone` (RFC 6901 escaping)."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] if parts[0] == "body" else parts
    return "#/" + "/".join(parts)


def field_problems(errors: Sequence[Any]) -> list[FieldProblem]:
    return [
        FieldProblem(pointer=pointer(e.get("loc", ())), detail=str(e.get("msg", "invalid"))) for e in errors
    ]


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_lastmile(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LastmileError)
        return problem_response(exc.problem(request.url.path), exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = Problem(
            type=PROBLEM_BASE + "validation-error",
            title="Invalid request",
            status=422,
            detail="The request has invalid fields; see errors.",
            instance=request.url.path,
            code="validation-error",
            errors=field_problems(exc.errors()),
        )
        return problem_response(problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(
            type="about:blank",
            title=str(exc.detail) if exc.detail else "HTTP error",
            status=exc.status_code,
            instance=request.url.path,
        )
        return problem_response(problem, dict(exc.headers) if exc.headers else None)

    from asyncpg.exceptions import InterfaceError, PostgresError
    from sqlalchemy.exc import SQLAlchemyError

    from lastmile.common.db import is_transient

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # the database is away, or the transaction must run again (a deadlock, a serialisation failure): nothing
        # was committed, so the client may retry
        log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, exc)
        problem = ServiceUnavailable("A dependency is unavailable; nothing was stored. Retry shortly.")
        return problem_response(problem.problem(request.url.path), {"Retry-After": "5"})

    async def on_dependency(request: Request, exc: Exception) -> JSONResponse:
        """Database and network errors: answered here when transient. A handler for `Exception` runs in
        Starlette's outermost middleware, which re-raises after answering: the server then logs 'Exception in
        ASGI application' and the request metrics count a 500, for a deadlock the client merely retries."""
        if is_transient(exc):
            return unavailable(request, exc)
        raise exc  # to on_unexpected: a 500

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):
            return unavailable(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem(
            type=PROBLEM_BASE + "internal",
            title="Internal error",
            status=500,
            instance=request.url.path,
            code="internal",
        )
        return problem_response(problem)

    app.add_exception_handler(LastmileError, on_lastmile)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for dependency_error in (SQLAlchemyError, PostgresError, InterfaceError, OSError):
        app.add_exception_handler(dependency_error, on_dependency)
    app.add_exception_handler(Exception, on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, so OpenAPI documents its problem+json answers."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {s: {"model": Problem, "content": {PROBLEM_JSON: {"schema": schema}}} for s in statuses}
