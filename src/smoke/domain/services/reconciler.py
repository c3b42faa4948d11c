"""The reconcile cron: converge whatever crashes, lost jobs and cancelled CI runs left behind."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from smoke.domain.errors import SmokeError
from smoke.domain.models import INSTANCE_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from smoke.domain.ports import Clock, CloudProvider, InstanceRepository, JobQueue, ProvisionLedger, UnitOfWork
from smoke.domain.services.builder import InstanceBuilder
from smoke.domain.services.cleaner import Cleaner

__all__ = ("ReconcilePolicy", "ReconcileReport", "Reconciler")

logger = logging.getLogger("smoke.reconcile")


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    provision_timeout_seconds: int
    instance_ttl_seconds: int
    lost_job_grace_seconds: int = 60
    """An accepted request with no instance row this long after acceptance lost its job."""


@dataclass(slots=True)
class ReconcileReport:
    requeued_provisions: int = 0
    failed_provisions: int = 0
    requeued_cleanups: int = 0
    expired_instances: int = 0
    orphans_deleted: int = 0
    errors: int = 0
    """Items that failed this pass (logged, left for the next pass); one never stops the others."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciler:
    policy: ReconcilePolicy
    ledger: ProvisionLedger
    instances: InstanceRepository
    cloud: CloudProvider
    queue: JobQueue
    uow: UnitOfWork
    clock: Clock
    builder: InstanceBuilder
    cleaner: Cleaner

    async def reconcile(self) -> ReconcileReport:
        """One pass; idempotent, and safe beside running jobs (re-queuing a pending job is a no-op)."""
        report = ReconcileReport()
        await self._provisions(report)
        await self._expired(report)
        await self._cleanups(report)
        await self._orphans(report)
        logger.info("reconciled: %s", report)
        return report

    async def _provisions(self, report: ReconcileReport) -> None:
        now = self.clock.now()
        lost = await self.ledger.without_instance(now - timedelta(seconds=self.policy.lost_job_grace_seconds))
        in_flight = await self.instances.provisioning_since(now)
        await self.uow.rollback()
        for entry in lost:
            async with self._isolated(report, "re-queue provision", entry.instance_id):
                await self.queue.enqueue_provision(entry.instance_id)
                report.requeued_provisions += 1
        timeout = timedelta(seconds=self.policy.provision_timeout_seconds)
        for instance in in_flight:
            async with self._isolated(report, "stale provision", instance.id):
                if instance.created_at + timeout < now:
                    reason = f"not running after {self.policy.provision_timeout_seconds} s"
                    await self.builder.fail(instance.id, reason)
                    report.failed_provisions += 1
                else:
                    await self.queue.enqueue_provision(instance.id)

    async def _expired(self, report: ReconcileReport) -> None:
        """Soft-delete instances past their TTL: a CI run cancelled before its delete step leaks no server."""
        cutoff = self.clock.now() - timedelta(seconds=self.policy.instance_ttl_seconds)
        expired = await self.instances.expired(cutoff)
        await self.uow.rollback()
        for candidate in expired:
            async with self._isolated(report, "expire", candidate.id):
                instance = await self.instances.get(candidate.id, lock=True)
                if instance is None or instance.is_deleted:
                    await self.uow.rollback()
                    continue
                await self.cleaner.soft_delete(instance)
                await self.uow.commit()
                await self.queue.enqueue_cleanup(instance.id)
                report.expired_instances += 1

    async def _cleanups(self, report: ReconcileReport) -> None:
        deleting = await self.instances.deleting()
        await self.uow.rollback()
        for instance in deleting:
            async with self._isolated(report, "re-queue cleanup", instance.id):
                await self.queue.enqueue_cleanup(instance.id)
                report.requeued_cleanups += 1

    async def _orphans(self, report: ReconcileReport) -> None:
        """Delete servers labelled ``managed-by=smoke`` that belong to no live instance.

        The servers are listed before the live instances are read: a server listed was created after its instance
        row was inserted, so a provision in flight is never mistaken for an orphan.
        """
        servers = await self.cloud.find_servers({MANAGED_BY_LABEL: MANAGED_BY_VALUE})
        live = await self.instances.live_ids()
        await self.uow.rollback()
        for server in servers:
            if _instance_id(server.labels.get(INSTANCE_ID_LABEL)) in live:
                continue
            async with self._isolated(report, "delete orphan server", server.id):
                logger.warning("deleting orphan server %s (%s)", server.id, server.name)
                await self.cloud.delete_server(server.id)
                report.orphans_deleted += 1

    @contextlib.asynccontextmanager
    async def _isolated(self, report: ReconcileReport, what: str, subject: object) -> AsyncIterator[None]:
        """Run one item of the pass; if it fails, log it, undo its writes, count it and go on with the rest."""
        try:
            yield
        except SmokeError as error:
            logger.warning("reconcile could not %s %s: %s", what, subject, error)
            await self.uow.rollback()
            report.errors += 1


def _instance_id(label: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(label) if label else None
    except ValueError:
        return None
