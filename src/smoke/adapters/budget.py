"""The ``RequestBudget`` port in this process's memory: for a command that runs alone (``smoke catalog check``).

Workers share their budget through PostgreSQL (``smoke.adapters.postgres.budget``); a one-off command without a
database still keeps to what the cloud's answers report.
"""

from __future__ import annotations

import asyncio
import time

from smoke.domain.budget import BucketLevel, RequestKind, Spend
from smoke.domain.ports import RequestBudget

__all__ = ("ProcessRequestBudget",)


class ProcessRequestBudget(RequestBudget):
    """The project's bucket as this process sees it, on the system clock."""

    def __init__(self) -> None:
        self._level = BucketLevel.full(time.time())
        self._lock = asyncio.Lock()

    async def spend(self, kind: RequestKind) -> Spend:
        async with self._lock:
            self._level, spend = self._level.spend(kind, time.time())
        return spend

    async def correct(self, ticket: int, capacity: int, remaining: int) -> None:
        async with self._lock:
            self._level = self._level.corrected(time.time(), ticket, capacity, remaining)
