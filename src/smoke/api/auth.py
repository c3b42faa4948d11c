"""The ops bearer guard: one constant-time comparison of the bytes sent, one identical 401 for every failure."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

__all__ = ("NOT_AUTHENTICATED", "not_authenticated", "ops_bearer_check", "ops_bearer_guard", "presented_bearer_token")

NOT_AUTHENTICATED = "Not authenticated"


def not_authenticated() -> NotAuthorizedException:
    return NotAuthorizedException(detail=NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})


def presented_bearer_token(connection: ASGIConnection) -> bytes:  # type: ignore[type-arg]
    """The credentials of the first ``Authorization`` header when its scheme is ``Bearer``, else ``b""``.

    Byte for byte as sent: only the HTTP parser has trimmed the value (SP and HTAB at either end). Nothing is decoded
    or stripped here, so a token followed by U+00A0 or U+0085 (which ``str.strip`` would remove) is not the token.
    """
    for name, value in connection.scope["headers"]:
        if name == b"authorization":
            scheme, _sep, token = value.partition(b" ")
            return token if scheme.lower() == b"bearer" else b""
    return b""


async def ops_bearer_check(connection: ASGIConnection) -> None:  # type: ignore[type-arg]
    """Admit ``Authorization: Bearer <OPS_BEARER_TOKEN>``; anything else is 401 with ``WWW-Authenticate: Bearer``.

    The ``before_request`` hook of the smoke endpoints: it runs where a guard would, before the parameters are
    read, so a request without the token is 401 whatever else is wrong with it. Not a guard: Litestar copies the
    route handler (``copy(handler)``, ~8 us) for every guard of every request; a hook is called as it is. And
    ``async def``: Litestar runs a plain ``def`` hook or guard in a worker thread (~200 us per request).
    """
    expected: bytes = connection.app.state.ops_token
    presented = presented_bearer_token(connection)
    if not (presented and hmac.compare_digest(presented, expected)):
        raise not_authenticated()


async def ops_bearer_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """``ops_bearer_check`` as a guard, for routes that are not on the smoke controller."""
    await ops_bearer_check(connection)
