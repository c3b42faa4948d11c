"""The dashboard's reading of the last days.

What ran, how long provisioning took per region, why runs failed, and how many requests hold a slot of the
live-instance cap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from smoke.domain.models import InstanceSummary, StatusChange
from smoke.domain.ports import Clock, Database, InstanceReader
from smoke.domain.services.requests import SpendGuard

__all__ = ("Dashboard", "FailureCount", "InstanceTimeline", "Overview", "ProvisionTime")


@dataclass(frozen=True, slots=True)
class InstanceTimeline:
    """An instance as the list shows it, and what happened to it."""

    instance: InstanceSummary
    events: list[StatusChange]
    """Oldest first, from the request's acceptance (``queued``) on."""


@dataclass(frozen=True, slots=True)
class ProvisionTime:
    """One instance that reached ``running``: when it was asked for, and how long it took from then."""

    accepted_at: datetime
    seconds: float


@dataclass(frozen=True, slots=True)
class FailureCount:
    """How many instances failed for one reason."""

    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the dashboard shows, read at ``now``."""

    now: datetime
    since: datetime
    """The oldest acceptance the figures below count from."""
    live: int
    """Requests holding a slot of the cap, counted as the spend guard counts them."""
    cap: int
    instances: int
    """Instances requested since ``since``."""
    recent: list[InstanceTimeline]
    """The newest instances, newest first."""
    provision_times: dict[str, list[ProvisionTime]]
    """Per region (sorted by name), oldest first."""
    failures: list[FailureCount]
    """The reasons of failed instances, most frequent first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    """Stateless, like the other read services: one serves every page load and every refresh of it."""

    reader: InstanceReader
    database: Database
    guard: SpendGuard
    clock: Clock

    DAYS: ClassVar[int] = 7
    RECENT: ClassVar[int] = 10
    MOST: ClassVar[int] = 5000
    """Past this many instances in ``DAYS``, the figures count only the newest ``MOST`` (``since`` says so)."""

    async def overview(self) -> Overview:
        """The last ``DAYS`` days as the dashboard shows them.

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        now = self.clock.now()
        since = now - timedelta(days=self.DAYS)
        summaries = await self.reader.recent(since=since, limit=self.MOST)
        if len(summaries) == self.MOST:
            since = summaries[-1].created_at
        shown = summaries[: self.RECENT]
        timelines = await self.reader.timelines([s.id for s in shown])
        async with self.database.begin() as uow:
            live = await uow.ledger.count_live()
        return Overview(
            now=now,
            since=since,
            live=live,
            cap=self.guard.max_live_instances,
            instances=len(summaries),
            recent=[InstanceTimeline(s, timelines.get(s.id, [])) for s in shown],
            provision_times=_provision_times(summaries),
            failures=[FailureCount(r, n) for r, n in Counter(s.reason for s in summaries if s.reason).most_common()],
        )


def _provision_times(summaries: list[InstanceSummary]) -> dict[str, list[ProvisionTime]]:
    by_region: defaultdict[str, list[ProvisionTime]] = defaultdict(list)
    for summary in reversed(summaries):
        if summary.provision_seconds is not None:
            by_region[summary.region_id].append(ProvisionTime(summary.created_at, summary.provision_seconds))
    return dict(sorted(by_region.items()))
