"""Readiness: can the database and the queue be reached right now?"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import asyncpg
from saq import Queue

from smoke.domain.ports import ReadinessProbe

__all__ = ("ConnectionReadinessProbe",)


class ConnectionReadinessProbe(ReadinessProbe):
    def __init__(self, pool: asyncpg.Pool, queue: Queue, *, timeout: float = 2.0) -> None:
        self._pool = pool
        self._queue = queue
        self._timeout = timeout

    async def unready(self) -> list[str]:
        database, queue = await asyncio.gather(
            self._reachable(self._pool.fetchval("SELECT 1")), self._reachable(self._queue.count("queued"))
        )
        return [name for name, ok in (("database", database), ("queue", queue)) if not ok]

    async def _reachable(self, probe: Awaitable[object]) -> bool:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await probe
            return True
        return False
