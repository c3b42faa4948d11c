"""Everything one simulated cloud remembers; ``POST /_sim/reset`` replaces it with a fresh one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from smoke.simulators.faults import Faults
from smoke.simulators.hetzner.cloud import HetznerCloud, IdSequences
from smoke.simulators.hetzner.rate_limit import TokenBucket
from smoke.simulators.hetzner.timing import Timing

__all__ = ("ChatRecord", "SimulatorSettings", "World")


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """See :func:`smoke.simulators.create_cloud_simulator`."""

    token: str
    timing: Timing
    token_delay_ms: int
    seed: int | None
    clock: Callable[[], float]
    server_limit: int | None
    rate_limit: int


@dataclass(slots=True)
class ChatRecord:
    """One chat stream an agent started.

    ``outcome`` is None while it streams, then ``done``, ``usage_report_failed``, ``dropped_by_fault`` or
    ``client_disconnected``; times are on the simulator's clock.
    """

    server_id: int
    message: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None

    def end(self, outcome: str, now: float) -> None:
        self.outcome, self.ended_at = outcome, now

    def to_json(self) -> dict[str, object]:
        return {
            "server_id": self.server_id,
            "message": self.message,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "client_disconnected": self.outcome == "client_disconnected",
        }


class World:
    def __init__(self, settings: SimulatorSettings, ids: IdSequences) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.faults = Faults.none(settings.token_delay_ms)
        self.rate_limit = TokenBucket(settings.clock(), settings.rate_limit)
        self.request_counts: Counter[str] = Counter()
        self.chats: list[ChatRecord] = []
        self.cloud = HetznerCloud(
            clock=settings.clock,
            timing=settings.timing,
            ids=ids,
            rng=self.rng,
            faults=lambda: self.faults.hetzner,
            chance=self.chance,
            server_limit=settings.server_limit,
        )

    def chance(self, ratio: float) -> bool:
        """True with probability ``ratio``, drawn from the seeded generator."""
        return ratio > 0 and self.rng.random() < ratio

    def state(self) -> dict[str, object]:
        """The body of ``GET /_sim/state``."""
        return {
            "servers": self.cloud.summaries(),
            "requests": dict(self.request_counts),
            "chats": [chat.to_json() for chat in self.chats],
        }
