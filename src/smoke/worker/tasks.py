"""The jobs: thin functions that hand their instance id to a domain service from the worker's container."""

from __future__ import annotations

import dataclasses
import time
from uuid import UUID

from dishka import AsyncContainer
from saq import Job
from saq.types import Context

from smoke.domain.models import InstanceStatus
from smoke.domain.services import Cleaner, Provisioner, Reconciler
from smoke.observability import PROVISION_SECONDS

__all__ = ("JobContext", "JobHeartbeat", "cleanup", "provision", "reconcile")


class JobContext(Context, total=False):
    container: AsyncContainer
    """The worker's dishka container; its services are stateless and open their own units of work."""


class JobHeartbeat:
    """Touch the job at most every ``every`` seconds, so the sweeper knows its worker is alive."""

    def __init__(self, job: Job, every: float) -> None:
        self._job = job
        self._every = every
        self._last = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            await self._job.update()


async def provision(ctx: JobContext, *, instance_id: str) -> str | None:
    """Provision the instance; safe to run again after any crash."""
    provisioner = await ctx["container"].get(Provisioner)
    job = ctx["job"]
    status = await provisioner.provision(UUID(instance_id), JobHeartbeat(job, every=max(job.heartbeat / 3, 1.0)))
    if status is InstanceStatus.RUNNING:
        PROVISION_SECONDS.observe(max(time.time() - job.queued / 1000, 0.0))
    return status.value if status else None


async def cleanup(ctx: JobContext, *, instance_id: str) -> str | None:
    """Delete the soft-deleted instance's server (a 404 counts as done), then mark it ``deleted``."""
    cleaner = await ctx["container"].get(Cleaner)
    status = await cleaner.clean(UUID(instance_id))
    return status.value if status else None


async def reconcile(ctx: JobContext) -> dict[str, int]:
    """Converge lost jobs, stale provisions, expired instances, orphan servers and ghosts (cron, every minute)."""
    reconciler = await ctx["container"].get(Reconciler)
    return dataclasses.asdict(await reconciler.reconcile())
