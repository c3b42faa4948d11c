"""The saq worker: the job functions, the reconcile cron, the container they resolve services from, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from dishka import AsyncContainer
from saq import CronJob, Queue, Worker

from smoke.observability import JOB_SECONDS, JOBS
from smoke.settings import Settings
from smoke.worker.log import JOB_FAILURES_IN_ONE_LINE
from smoke.worker.tasks import JobContext, cleanup, provision, reconcile

__all__ = ("RunningWorker", "make_worker", "running_worker")

logger = logging.getLogger("smoke.worker")
_FUNCTIONS = (provision, cleanup, reconcile)


def make_worker(
    container: AsyncContainer,
    queue: Queue,
    *,
    concurrency: int = 10,
    sweep_seconds: int = 10,
    reconcile_cron: str = "* * * * *",
) -> Worker[JobContext]:
    """A worker for ``queue`` whose jobs resolve their services from ``container``.

    ``sweep_seconds`` bounds how late a job whose worker died is noticed (then it is retried). A job failing with a
    ``SmokeError`` is logged in one line (``smoke.worker.log``).
    """
    logging.getLogger("saq").addFilter(JOB_FAILURES_IN_ONE_LINE)

    async def start(ctx: JobContext) -> None:
        ctx["container"] = container
        jobs = ", ".join(job.__name__ for job in _FUNCTIONS)
        logger.info("worker started on queue %s (concurrency %d): %s", queue.name, concurrency, jobs)

    async def stop(ctx: JobContext) -> None:
        logger.info("worker stopped on queue %s", queue.name)

    async def before(ctx: JobContext) -> None:
        job = ctx["job"]
        structlog.contextvars.bind_contextvars(
            job_id=job.key, function=job.function, instance_id=(job.kwargs or {}).get("instance_id")
        )

    async def after(ctx: JobContext) -> None:
        job = ctx["job"]
        JOBS.labels(job.function, "error" if ctx.get("exception") else "ok").inc()
        JOB_SECONDS.labels(job.function).observe(max(time.time() - job.started / 1000, 0.0))
        structlog.contextvars.clear_contextvars()

    return Worker(
        queue,
        functions=list(_FUNCTIONS),
        cron_jobs=[CronJob(reconcile, cron=reconcile_cron, timeout=300, retries=1)],
        concurrency=concurrency,
        startup=[start],
        shutdown=[stop],
        before_process=[before],
        after_process=[after],
        timers={"sweep": sweep_seconds, "schedule": 1, "abort": 1, "worker_info": 10},
    )


@dataclass(frozen=True, slots=True)
class RunningWorker:
    """A worker started by ``running_worker``; ``alive`` until its loop ended (stopped, or failed)."""

    task: asyncio.Task[None]

    @property
    def alive(self) -> bool:
        return not self.task.done()


@contextlib.asynccontextmanager
async def running_worker(
    container: AsyncContainer, settings: Settings, *, concurrency: int = 10
) -> AsyncIterator[RunningWorker]:
    """A worker on the container's queue, as a task of the running loop; signals stay with the caller.

    Raises:
        StorageUnavailable: the queue cannot be reached (the worker does not start).
    """
    worker = make_worker(
        container, await container.get(Queue), concurrency=concurrency, sweep_seconds=settings.queue_sweep_seconds
    )
    worker.SIGNALS = []
    task = asyncio.create_task(worker.start())
    try:
        yield RunningWorker(task)
    finally:
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
