"""The ops bearer guard: one constant-time comparison, one identical 401 for every failure."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

__all__ = ("NOT_AUTHENTICATED", "ops_bearer_guard")

NOT_AUTHENTICATED = "Not authenticated"


async def ops_bearer_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Admit ``Authorization: Bearer <OPS_BEARER_TOKEN>``; anything else is 401 with ``WWW-Authenticate: Bearer``.

    ``async def``: Litestar runs a plain ``def`` guard in a worker thread (~200 us per request).
    """
    expected: bytes = connection.app.state.ops_token
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode("utf-8", "surrogateescape")
    if not (scheme.lower() == "bearer" and presented and hmac.compare_digest(presented, expected)):
        raise NotAuthorizedException(detail=NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
