import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from lastmile.common.errors import PROBLEM_JSON, install_problem_handlers, pointer


def test_pointer_names_the_field_in_the_body() -> None:
    assert pointer(("body", "recipient", "phone")) == "#/recipient/phone"
    assert pointer(("body", "time_windows", 0, "end")) == "#/time_windows/0/end"


def test_pointer_escapes_slashes_and_tildes() -> None:
    assert pointer(("body", "metadata", "a/b~c")) == "#/metadata/a~1b~0c"


def test_pointer_keeps_where_a_query_parameter_came_from() -> None:
    assert pointer(("query", "limit")) == "#/query/limit"


def _failing_app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fail")
    async def fail() -> None:
        raise error

    return app


def _deadlock_wrapped() -> sa_exc.DBAPIError:
    driver_error = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return sa_exc.DBAPIError("UPDATE stops ...", None, adapted)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # a statement sent to asyncpg directly
        asyncpg.exceptions.SerializationError("could not serialize access"),
        _deadlock_wrapped(),  # through SQLAlchemy
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
async def test_a_transaction_to_run_again_is_a_503_to_retry_and_no_unhandled_error(error: Exception) -> None:
    # raise_app_exceptions (the default): an exception the app re-raises after answering fails the request here,
    # as it makes uvicorn log 'Exception in ASGI application'
    transport = httpx.ASGITransport(app=_failing_app(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/fail")
    assert reply.status_code == 503
    assert reply.headers["content-type"] == PROBLEM_JSON
    assert reply.headers["retry-after"] == "5"
    assert reply.json()["code"] == "unavailable"


async def test_a_database_error_that_retrying_does_not_fix_is_a_500() -> None:
    error = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    transport = httpx.ASGITransport(app=_failing_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/fail")
    assert reply.status_code == 500
    assert reply.json()["code"] == "internal"
