"""The job queue on saq: PostgreSQL (the default, the same database) or Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.exceptions
from psycopg import OperationalError as PsycopgOperationalError
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from saq import Queue
from saq.queue.postgres import PostgresQueue

from smoke.domain.errors import StorageUnavailable
from smoke.domain.models import cleanup_task_id, provision_task_id
from smoke.domain.ports import JobQueue

__all__ = ("JobPolicy", "SaqJobQueue", "connect_saq_queue", "make_saq_queue")

QUEUE_NAME = "smoke"
_UNAVAILABLE = (OSError, TimeoutError, PoolTimeout, PsycopgOperationalError, redis.exceptions.ConnectionError)


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """How a kind of job runs: a finite timeout, retries (total attempts, >= 2 so a crash is retried), a heartbeat.

    A job whose worker died is swept once its heartbeat (or timeout) has passed, and tried again.
    """

    timeout: int
    retries: int = 5
    heartbeat: int = 30
    retry_delay: float = 1.0
    retry_backoff: float = 30.0

    def options(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "retries": self.retries,
            "heartbeat": self.heartbeat,
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff,
        }


def make_saq_queue(url: str, *, max_connections: int = 10) -> Queue:
    """A saq queue on ``postgresql://`` (a bounded psycopg pool, fast to fail) or ``redis://``; not connected yet."""
    if url.startswith(("redis://", "rediss://")):
        return Queue.from_url(url, name=QUEUE_NAME)
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        timeout=5,
        open=False,
        kwargs={"autocommit": True},
        check=AsyncConnectionPool.check_connection,
    )
    return PostgresQueue(pool=pool, name=QUEUE_NAME, manage_pool_lifecycle=True)


async def connect_saq_queue(queue: Queue) -> Queue:
    """Connect (creating saq's tables on PostgreSQL); ``StorageUnavailable`` when the backend cannot be reached."""
    try:
        await queue.connect()
    except _UNAVAILABLE as error:
        await queue.disconnect()
        raise StorageUnavailable(f"queue unavailable: {type(error).__name__}") from error
    return queue


class SaqJobQueue(JobQueue):
    """Job key = task id, so a task id that is still queued or running is never queued twice."""

    def __init__(self, queue: Queue, *, provision: JobPolicy, cleanup: JobPolicy) -> None:
        self._queue = queue
        self._provision = provision
        self._cleanup = cleanup

    async def enqueue_provision(self, instance_id: UUID) -> str:
        return await self._enqueue("provision", provision_task_id(instance_id), instance_id, self._provision)

    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        return await self._enqueue("cleanup", cleanup_task_id(instance_id), instance_id, self._cleanup)

    async def _enqueue(self, function: str, task_id: str, instance_id: UUID, policy: JobPolicy) -> str:
        try:
            await self._queue.enqueue(
                function, key=task_id, kwargs={"instance_id": str(instance_id)}, **policy.options()
            )
        except _UNAVAILABLE as error:
            raise StorageUnavailable(f"queue unavailable: {type(error).__name__}") from error
        return task_id
