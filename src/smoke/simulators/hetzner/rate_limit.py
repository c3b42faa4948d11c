"""The Hetzner API rate limit: one token bucket per project, 3600 requests, refilling at one per second."""

from __future__ import annotations

import math

__all__ = ("TokenBucket",)

CAPACITY = 3600
REFILL_PER_SECOND = 1.0


class TokenBucket:
    def __init__(self, now: float) -> None:
        self._tokens = float(CAPACITY)
        self._updated = now

    def take(self, now: float) -> bool:
        """Spend one request; False when the bucket is empty."""
        self._refill(now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        """``RateLimit-*`` headers; ``RateLimit-Reset`` is the UNIX time at which the bucket is full again."""
        self._refill(now)
        seconds_to_full = (CAPACITY - self._tokens) / REFILL_PER_SECOND
        return {
            "RateLimit-Limit": str(CAPACITY),
            "RateLimit-Remaining": str(math.floor(self._tokens)),
            "RateLimit-Reset": str(math.ceil(now + seconds_to_full)),
        }

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(CAPACITY), self._tokens + elapsed * REFILL_PER_SECOND)
        self._updated = max(now, self._updated)
