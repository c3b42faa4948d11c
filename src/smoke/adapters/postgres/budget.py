"""The ``RequestBudget`` port in PostgreSQL: one row per cloud project, locked for each spend and each correction.

Every worker of a deployment reads and writes the same row, on the database's clock, so the estimate is one for
all of them (smoke.domain.budget). A spend is one short transaction (lock the row, update it): well under a
millisecond here, against the tens of milliseconds of the request it admits.

The bucket's key is a digest of the API URL and the token: two deployments sharing a project and a token share one
bucket; the token itself is never stored.
"""

from __future__ import annotations

import hashlib
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from smoke.adapters.postgres.errors import UNAVAILABLE
from smoke.domain.budget import BucketLevel, RequestKind, Spend
from smoke.domain.ports import RequestBudget

__all__ = ("PostgresRequestBudget", "bucket_key")

logger = logging.getLogger("smoke.hetzner")

_LOCK = """
SELECT capacity, tokens, level_at, spent, extract(epoch FROM clock_timestamp())::float8 AS now
FROM cloud_request_budgets WHERE bucket = $1 FOR UPDATE
"""
_CREATE = """
INSERT INTO cloud_request_budgets (bucket, capacity, tokens, level_at, spent)
VALUES ($1, $2::int, $2::int, extract(epoch FROM clock_timestamp()), 0)
ON CONFLICT (bucket) DO NOTHING
"""
_STORE = "UPDATE cloud_request_budgets SET capacity = $2, tokens = $3, level_at = $4, spent = $5 WHERE bucket = $1"


def bucket_key(api_url: str, token: str) -> str:
    """The row of the project behind ``token`` at ``api_url`` (a digest: the token is not stored)."""
    return hashlib.sha256(f"{api_url}\n{token}".encode()).hexdigest()


class PostgresRequestBudget(RequestBudget):
    """A project's request bucket in ``cloud_request_budgets``.

    Args:
        pool: an asyncpg pool on the database every worker uses.
        bucket: the row's key (:func:`bucket_key`).
    """

    def __init__(self, pool: asyncpg.Pool, bucket: str) -> None:
        self._pool = pool
        self._bucket = bucket
        self._ungoverned = False

    async def spend(self, kind: RequestKind) -> Spend:
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                level, now = await self._locked(connection)
                level, spend = level.spend(kind, now)
                await self._store(connection, level)
        except UNAVAILABLE as error:
            self._unreachable(error)
            return Spend(0, 0.0)
        self._ungoverned = False
        return spend

    async def correct(self, ticket: int, capacity: int, remaining: int) -> None:
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                level, now = await self._locked(connection)
                await self._store(connection, level.corrected(now, ticket, capacity, remaining))
        except UNAVAILABLE as error:
            self._unreachable(error)

    async def _locked(self, connection: PoolConnectionProxy) -> tuple[BucketLevel, float]:
        row = await connection.fetchrow(_LOCK, self._bucket)
        if row is None:
            await connection.execute(_CREATE, self._bucket, BucketLevel.full(0).capacity)
            row = await connection.fetchrow(_LOCK, self._bucket)
            assert row is not None
        level = BucketLevel(row["capacity"], row["tokens"], row["level_at"], row["spent"])
        return level, float(row["now"])

    async def _store(self, connection: PoolConnectionProxy, level: BucketLevel) -> None:
        await connection.execute(_STORE, self._bucket, level.capacity, level.tokens, level.at, level.spent)

    def _unreachable(self, error: BaseException) -> None:
        if not self._ungoverned:
            logger.warning("request budget unreachable (%s): Hetzner requests go ungoverned", type(error).__name__)
        self._ungoverned = True
