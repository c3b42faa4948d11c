"""Driver errors that mean "the database cannot be reached", translated into the domain's ``StorageUnavailable``."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc

from smoke.domain.errors import StorageUnavailable

__all__ = ("is_unique_violation", "storage_errors_translated", "translate_storage_errors")

P = ParamSpec("P")
R = TypeVar("R")

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.exceptions.OperatorInterventionError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # every pooled connection busy: come back later
)


@contextlib.asynccontextmanager
async def storage_errors_translated() -> AsyncIterator[None]:
    """Raise ``StorageUnavailable`` where the driver says the database is unreachable or went away."""
    try:
        yield
    except UNAVAILABLE as error:
        raise StorageUnavailable(f"database unavailable: {type(error).__name__}") from error
    except sa_exc.DBAPIError as error:
        # Class 08 (connection exception) and 57 (operator intervention: starting up, shutting down) mean the
        # database went away, whatever wrapper SQLAlchemy chose.
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        if error.connection_invalidated or sqlstate.startswith(("08", "57")):
            raise StorageUnavailable("database connection lost") from error
        raise


def translate_storage_errors(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``storage_errors_translated`` around every call of ``method``."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        async with storage_errors_translated():
            return await method(*args, **kwargs)

    return wrapper


def is_unique_violation(error: sa_exc.IntegrityError) -> bool:
    return getattr(error.orig, "sqlstate", None) == "23505" or getattr(error.orig, "pgcode", None) == "23505"
