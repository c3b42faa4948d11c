"""Baseline (a) of the read path: a bare ASGI callable running Smoke Status's SQL on a plain asyncpg pool.

It does what Smoke Status does, nothing more: the same bearer check (scheme case-insensitive, constant-time
comparison), the same statement (``AsyncpgInstanceReader.view``), the same JSON and the same statuses
(200, 401 with ``WWW-Authenticate: Bearer``, 404, 422 for a malformed id). Serve it with
``uvicorn benchmarks.apps.bare_asgi:app`` or ``granian --interface asgi benchmarks.apps.bare_asgi:app``;
it reads ``DATABASE_URL`` and ``OPS_BEARER_TOKEN`` from the environment.
"""

from __future__ import annotations

import hmac
import os
import uuid
from typing import Any

import asyncpg
import msgspec

from smoke.settings import DEFAULT_CUSTOMER_ID

SQL = "SELECT hostname, status FROM instances WHERE id = $1 AND customer_id = $2"
PREFIX = "/internal/v1/smoke/instances/"
TOKEN = os.environ.get("OPS_BEARER_TOKEN", "").encode()
CUSTOMER_ID = DEFAULT_CUSTOMER_ID

_encode = msgspec.json.Encoder().encode
_pool: asyncpg.Pool | None = None


def _answer(
    status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


_UNAUTHORIZED = _answer(401, b'{"detail":"Not authenticated"}', ((b"www-authenticate", b"Bearer"),))
_NOT_FOUND = _answer(404, b'{"detail":"Instance not found"}')
_NO_ROUTE = _answer(404, b'{"detail":"Not Found"}')
_MALFORMED = _answer(
    422, b'{"detail":[{"loc":["path","instance_id"],"msg":"Input should be a valid UUID","type":"uuid_parsing"}]}'
)


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=10, max_size=10)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _authorized(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"authorization":
            scheme, _sep, token = value.partition(b" ")
            presented = token.strip()
            return scheme.lower() == b"bearer" and bool(presented) and hmac.compare_digest(presented, TOKEN)
    return False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(PREFIX) or "/" in path[len(PREFIX) :]:
        start, body = _NO_ROUTE
    elif not _authorized(scope["headers"]):
        start, body = _UNAUTHORIZED
    else:
        try:
            instance_id = uuid.UUID(path[len(PREFIX) :])
        except ValueError:
            start, body = _MALFORMED
        else:
            assert _pool is not None
            row = await _pool.fetchrow(SQL, instance_id, CUSTOMER_ID)
            if row is None:
                start, body = _NOT_FOUND
            else:
                payload = _encode({"hostname": row["hostname"], "id": str(instance_id), "status": row["status"]})
                start, body = _answer(200, payload)
    await send(start)
    await send(body)
