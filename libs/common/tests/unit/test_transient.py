"""Which database errors mean 'the database is away' (retry, 503, redeliver) rather than a bad request or event."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from lastmile.common.db import is_transient


def wrapped(driver_error: Exception) -> sa_exc.DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises for an asyncpg error it has no class of its own for: a bare
    DBAPIError whose `orig` is the adapted error, raised from asyncpg's own."""
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return sa_exc.DBAPIError("INSERT ...", None, adapted)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_a_database_away_or_a_transaction_to_run_again_is_transient(driver_error: Exception) -> None:
    assert is_transient(wrapped(driver_error))
    assert is_transient(driver_error)


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
        asyncpg.exceptions.DataError("invalid input"),
    ],
)
def test_errors_that_retrying_does_not_fix_are_not_transient(driver_error: Exception) -> None:
    assert not is_transient(wrapped(driver_error))
    assert not is_transient(driver_error)
    assert not is_transient(ValueError("a bug"))
