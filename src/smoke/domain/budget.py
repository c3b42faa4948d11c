"""A cloud project's request budget, mirrored: what every worker of a deployment spends from, and reads before it asks.

Hetzner gives each project a bucket of requests (3600 by default) that refills at its size per hour, and reports it
on every answer (``RateLimit-Limit``, ``RateLimit-Remaining``). :class:`BucketLevel` is smoke's estimate of that
bucket, kept in one place for all workers (the ``RequestBudget`` port): each request is *spent* from it before it is
sent, and each answer that reports the bucket *corrects* it.

- **Reads stretch first.** A write (create, delete, set rules) may take the last request; a read (the polls of a
  server booting or an action running, label lookups) leaves a reserve to the writes: it waits while the bucket
  holds less than :meth:`BucketLevel.floor`, so polls slow to the refill rate before the bucket is empty.
- **Corrections are conservative.** Every spend gets a ticket, its place in the sequence of spends. An answer to
  ticket ``t`` reporting ``remaining`` says the bucket held ``remaining`` after request ``t``; the spends after
  ``t`` may not have reached the cloud yet, so the estimate becomes ``remaining - (spent - t)``. The newest answer
  wins: the estimate follows the cloud down when someone else spends the project's bucket, and back up when it
  refills.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = ("DEFAULT_CAPACITY", "BucketLevel", "RequestKind", "Spend")

DEFAULT_CAPACITY = 3600
"""Hetzner's bucket until an answer says otherwise."""
SECONDS_PER_HOUR = 3600.0
READ_RESERVE_SHARE = 0.1
READ_RESERVE_MAX = 30


class RequestKind(enum.Enum):
    """What a request does to the project: reads wait before writes do."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Spend:
    """The budget's answer to one request: go (``wait`` 0, with a ``ticket``), or ask again in ``wait`` seconds.

    Attributes:
        ticket: the spend's place in the sequence, for :meth:`BucketLevel.corrected`; 0 when nothing was spent.
        wait: seconds until the bucket holds enough for this kind of request; 0 when it was spent.
    """

    ticket: int
    wait: float

    @property
    def granted(self) -> bool:
        """Whether the request was spent and may go now."""
        return self.wait == 0


@dataclass(frozen=True, slots=True)
class BucketLevel:
    """The estimate of a project's bucket at a moment.

    Attributes:
        capacity: requests the bucket holds when full; it refills ``capacity`` per hour.
        tokens: requests it holds at ``at`` (may be below 0 while answers are outstanding).
        at: when, in the store's clock (UNIX seconds).
        spent: requests spent so far, all workers together; the ticket of the last spend.
    """

    capacity: int
    tokens: float
    at: float
    spent: int = 0

    @classmethod
    def full(cls, now: float, capacity: int = DEFAULT_CAPACITY) -> BucketLevel:
        """A full bucket at ``now``: the estimate before any answer said otherwise."""
        return cls(capacity, float(capacity), now)

    @property
    def refill_per_second(self) -> float:
        """Requests the bucket gets back each second."""
        return self.capacity / SECONDS_PER_HOUR

    def floor(self, kind: RequestKind) -> float:
        """Requests the bucket must hold for ``kind`` to go: 1 for a write, 1 + the writes' reserve for a read.

        The reserve is a tenth of the bucket, at most 30.
        """
        if kind is RequestKind.WRITE:
            return 1.0
        return 1.0 + min(READ_RESERVE_MAX, int(self.capacity * READ_RESERVE_SHARE))

    def refilled(self, now: float) -> BucketLevel:
        """The level at ``now`` (a clock that went back refills nothing)."""
        elapsed = max(0.0, now - self.at)
        return replace(self, tokens=min(float(self.capacity), self.tokens + elapsed * self.refill_per_second), at=now)

    def spend(self, kind: RequestKind, now: float) -> tuple[BucketLevel, Spend]:
        """Spend one request of ``kind`` at ``now`` if the bucket holds its floor; else say how long to wait."""
        level = self.refilled(now)
        missing = level.floor(kind) - level.tokens
        if missing > 0:
            return level, Spend(0, missing / level.refill_per_second)
        spent = level.spent + 1
        return replace(level, tokens=level.tokens - 1, spent=spent), Spend(spent, 0.0)

    def corrected(self, now: float, ticket: int, capacity: int, remaining: int) -> BucketLevel:
        """The level after the answer to ``ticket`` reported ``capacity`` and ``remaining`` (see the module doc)."""
        if capacity < 1 or remaining < 0:
            return self.refilled(now)
        outstanding = max(0, self.spent - ticket) if ticket else 0
        return replace(self, capacity=capacity, tokens=float(min(capacity, remaining) - outstanding), at=now)
