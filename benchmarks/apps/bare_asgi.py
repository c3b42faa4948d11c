"""Baseline (a) of the read path: a bare ASGI callable running Smoke Status's and Smoke Poll's SQL on asyncpg.

It does what the two endpoints do, nothing more: the same bearer check (scheme case-insensitive, constant-time
comparison), the same statements (``AsyncpgInstanceReader.view`` and ``.poll``; ``bench_read`` checks they are
still smoke's), the same JSON and the same statuses (200, 401 with ``WWW-Authenticate: Bearer``, 404, 422 for a
malformed id or key). Serve it with ``uvicorn benchmarks.apps.bare_asgi:app``; it reads ``DATABASE_URL`` and
``OPS_BEARER_TOKEN`` from the environment.

Its pool is asyncpg's default (``min_size=max_size=10``), which resets each connection it takes back with one more
round trip (``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``). ``BARE_POOL_RESET=none``
gives it smoke's read pool setting instead (``reset`` that sends nothing): the baseline made as lean as smoke's
pool, to read smoke's figure against both.
"""

from __future__ import annotations

import hmac
import os
import uuid
from typing import Any

import asyncpg
import msgspec

from smoke.settings import DEFAULT_CUSTOMER_ID

VIEW_SQL = (
    "(SELECT hostname, status FROM instances WHERE id = $1 AND customer_id = $2) UNION ALL "
    "(SELECT NULL, 'queued' FROM provision_ledger WHERE instance_id = $1 AND customer_id = $2) LIMIT 1"
)
POLL_SQL = (
    "SELECT i.id, i.status FROM provision_ledger l JOIN instances i ON i.id = l.instance_id "
    "WHERE l.customer_id = $1 AND l.idempotency_key = $2 AND i.customer_id = $1"
)
PREFIX = "/internal/v1/smoke/instances/"
BY_KEY = PREFIX + "by-key/"
TOKEN = os.environ.get("OPS_BEARER_TOKEN", "").encode()
CUSTOMER_ID = DEFAULT_CUSTOMER_ID
RESET = os.environ.get("BARE_POOL_RESET", "default")

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
_BAD_KEY = _answer(
    422, b'{"detail":[{"loc":["path","idempotency_key"],"msg":"String should match pattern","type":"string"}]}'
)
_NOT_FOUND_YET = _answer(200, b'{"found":false,"instance_id":null,"status":null}')


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    return None


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            reset = _nothing_to_reset if RESET == "none" else None
            _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=10, max_size=10, reset=reset)
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
            return scheme.lower() == b"bearer" and bool(token) and hmac.compare_digest(token, TOKEN)
    return False


async def _status(tail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        instance_id = uuid.UUID(tail)
    except ValueError:
        return _MALFORMED
    assert _pool is not None
    row = await _pool.fetchrow(VIEW_SQL, instance_id, CUSTOMER_ID)
    if row is None:
        return _NOT_FOUND
    hostname = row["hostname"]
    payload = {"hostname": hostname or "", "id": str(instance_id), "status": row["status"]}
    return _answer(200, _encode(payload))


async def _poll(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not key or len(key) > 255 or "\x00" in key:
        return _BAD_KEY
    assert _pool is not None
    row = await _pool.fetchrow(POLL_SQL, CUSTOMER_ID, key)
    if row is None:
        return _NOT_FOUND_YET
    return _answer(200, _encode({"found": True, "instance_id": str(row["id"]), "status": row["status"]}))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(PREFIX):
        start, body = _NO_ROUTE
    elif not _authorized(scope["headers"]):
        start, body = _UNAUTHORIZED
    elif path.startswith(BY_KEY) and "/" not in path[len(BY_KEY) :]:
        start, body = await _poll(path[len(BY_KEY) :])
    elif "/" not in path[len(PREFIX) :]:
        start, body = await _status(path[len(PREFIX) :])
    else:
        start, body = _NO_ROUTE
    await send(start)
    await send(body)
