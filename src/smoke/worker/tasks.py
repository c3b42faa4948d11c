"""The jobs: thin functions that hand their instance id to a domain service from the worker's container."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from uuid import UUID

from dishka import AsyncContainer
from saq import Job
from saq.types import Context

from smoke.domain.models import InstanceStatus
from smoke.domain.services import Cleaner, Provisioner, Reconciler
from smoke.observability import PROVISION_SECONDS

__all__ = ("JobContext", "cleanup", "kept_alive", "provision", "reconcile")

logger = logging.getLogger("smoke.worker")


class JobContext(Context, total=False):
    container: AsyncContainer
    """The worker's dishka container; its services are stateless and open their own units of work."""


@contextlib.asynccontextmanager
async def kept_alive(job: Job) -> AsyncIterator[None]:
    """Touch ``job`` every third of its heartbeat while the block runs, so the sweeper knows its worker is alive.

    From a task of its own: a job spends most of its time in calls to the cloud, and one call that is being retried
    (up to 5 retries, waits up to 1 + 2 + 4 + 8 + 16 s) or waits for an action outlasts a heartbeat. Touched only
    between such calls, the job was swept as dead and aborted mid-retry, again and again, before it could fail and
    note why. A worker that dies stops touching its jobs with it; a job that hangs still ends at its timeout. The
    last touch has ended when the block is left (no write races the job's completion).
    """
    if not job.heartbeat:
        yield
        return
    every = max(job.heartbeat / 3, 1.0)
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
                return
            try:
                await job.update()
            except Exception as error:
                logger.warning("could not touch job %s: %s: %s", job.key, type(error).__name__, error)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        stop.set()
        await beating


async def provision(ctx: JobContext, *, instance_id: str) -> str | None:
    """Provision the instance; safe to run again after any crash."""
    provisioner = await ctx["container"].get(Provisioner)
    job = ctx["job"]
    async with kept_alive(job):
        status = await provisioner.provision(UUID(instance_id))
    if status is InstanceStatus.RUNNING:
        PROVISION_SECONDS.observe(max(time.time() - job.queued / 1000, 0.0))
    return status.value if status else None


async def cleanup(ctx: JobContext, *, instance_id: str) -> str | None:
    """Delete the soft-deleted instance's server (a 404 counts as done), then mark it ``deleted``."""
    cleaner = await ctx["container"].get(Cleaner)
    async with kept_alive(ctx["job"]):
        status = await cleaner.clean(UUID(instance_id))
    return status.value if status else None


async def reconcile(ctx: JobContext) -> dict[str, int]:
    """Converge lost jobs, stale provisions, expired instances, orphan servers and ghosts (cron, every minute)."""
    reconciler = await ctx["container"].get(Reconciler)
    return dataclasses.asdict(await reconciler.reconcile())
