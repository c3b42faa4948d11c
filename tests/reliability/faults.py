"""Fault hooks wired into the real container through dishka providers (``make_container(settings, provider)``)."""

from __future__ import annotations

import os
import signal
from uuid import UUID

from dishka import Provider, Scope, decorate, provide

from smoke.domain.errors import StorageUnavailable
from smoke.domain.ports import JobQueue
from smoke.domain.services import ReconcilePolicy
from smoke.settings import Settings

__all__ = ("CrashOnEnqueue", "EnqueueFaults", "ImpatientReconciler")


class _FailingQueue(JobQueue):
    def __init__(self, inner: JobQueue, faults: EnqueueFaults) -> None:
        self._inner = inner
        self._faults = faults

    async def enqueue_provision(self, instance_id: UUID) -> str:
        if self._faults.remaining > 0:
            self._faults.remaining -= 1
            self._faults.failed.append(instance_id)
            raise StorageUnavailable("queue unavailable: injected after the ledger commit")
        return await self._inner.enqueue_provision(instance_id)

    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        return await self._inner.enqueue_cleanup(instance_id)


class EnqueueFaults(Provider):
    """The first ``failures`` provision enqueues raise ``StorageUnavailable`` (the request is committed by then)."""

    def __init__(self, failures: int) -> None:
        super().__init__(scope=Scope.APP)
        self.remaining = failures
        self.failed: list[UUID] = []

    @decorate
    def queue(self, queue: JobQueue) -> JobQueue:
        return _FailingQueue(queue, self)


class _KillingQueue(JobQueue):
    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner

    async def enqueue_provision(self, instance_id: UUID) -> str:
        os.kill(os.getpid(), signal.SIGKILL)  # right after the ledger commit, before the job exists
        raise AssertionError("unreachable")

    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        return await self._inner.enqueue_cleanup(instance_id)


class CrashOnEnqueue(Provider):
    """The process kills itself (SIGKILL) when it is about to queue a provision job."""

    def __init__(self) -> None:
        super().__init__(scope=Scope.APP)

    @decorate
    def queue(self, queue: JobQueue) -> JobQueue:
        return _KillingQueue(queue)


class ImpatientReconciler(Provider):
    """Reconcile with no grace for lost jobs: what the cron does 60 s later, now."""

    def __init__(self) -> None:
        super().__init__(scope=Scope.APP)

    @provide(override=True)
    def policy(self, settings: Settings) -> ReconcilePolicy:
        return ReconcilePolicy(settings.provision_timeout_seconds, settings.instance_ttl_seconds, 0)
