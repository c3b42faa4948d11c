"""The Hetzner API rate limit: one token bucket per project that holds N requests and refills N per hour.

Hetzner's default is 3600 an hour: one request a second. ``RateLimit-Reset`` is the UNIX time at which the bucket
is full again (a 412 answered at 06:30:58 with ``RateLimit-Remaining: 3598`` said ``RateLimit-Reset: 06:31:00``),
so an empty bucket says one hour ahead, whatever N.
"""

from __future__ import annotations

import math

__all__ = ("DEFAULT_CAPACITY", "TokenBucket")

DEFAULT_CAPACITY = 3600
_SECONDS_PER_HOUR = 3600.0


class TokenBucket:
    def __init__(self, now: float, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._refill_per_second = capacity / _SECONDS_PER_HOUR
        self._tokens = float(capacity)
        self._updated = now

    def take(self, now: float) -> bool:
        """Spend one request; False when the bucket is empty."""
        self._refill(now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        """The ``RateLimit-*`` headers of the bucket as it is."""
        self._refill(now)
        return self._headers(now, self._tokens)

    def empty_headers(self, now: float) -> dict[str, str]:
        """The ``RateLimit-*`` headers the bucket would send if it were empty, as on a 429."""
        return self._headers(now, 0.0)

    def _headers(self, now: float, tokens: float) -> dict[str, str]:
        seconds_to_full = (self.capacity - tokens) / self._refill_per_second
        return {
            "RateLimit-Limit": str(self.capacity),
            "RateLimit-Remaining": str(math.floor(tokens)),
            "RateLimit-Reset": str(math.ceil(now + seconds_to_full)),
        }

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.capacity), self._tokens + elapsed * self._refill_per_second)
        self._updated = max(now, self._updated)
