"""The system clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from smoke.domain.ports import Clock

__all__ = ("SystemClock",)


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
