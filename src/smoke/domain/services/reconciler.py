"""The reconcile cron: converge whatever crashes, lost jobs and cancelled CI runs left behind.

Every step acts on the smoke customer's own rows (the stores are bound to it) and on servers labelled as its own:
a server carrying another customer's label, or no customer label and an instance id that is not ours, belongs to
another smoke deployment or to the platform, and is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from smoke.domain.errors import SmokeError
from smoke.domain.models import (
    CUSTOMER_LABEL,
    INSTANCE_ID_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    CloudServer,
    CustomerScope,
)
from smoke.domain.ports import Clock, CloudProvider, Database, JobQueue, UnitOfWork
from smoke.domain.services.deleter import Deleter
from smoke.domain.services.provisioner import Provisioner

__all__ = ("GHOST_REASON", "ReconcilePolicy", "ReconcileReport", "Reconciler")

logger = logging.getLogger("smoke.reconcile")

GHOST_REASON = "server gone"


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """When reconcile considers a job lost, a provision stale and an instance expired."""

    provision_timeout_seconds: int
    instance_ttl_seconds: int
    lost_job_grace_seconds: int = 60
    """An accepted request with no instance row this long after acceptance lost its job."""


@dataclass(slots=True)
class ReconcileReport:
    """What one pass did, by step (the cron job returns it)."""

    requeued_provisions: int = 0
    failed_provisions: int = 0
    requeued_cleanups: int = 0
    expired_instances: int = 0
    orphans_deleted: int = 0
    ghosts_failed: int = 0
    errors: int = 0
    """Items that failed this pass (logged, left for the next pass); one never stops the others."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciler:
    """The reconcile cron (worker ``reconcile``, every minute)."""

    scope: CustomerScope
    policy: ReconcilePolicy
    database: Database
    cloud: CloudProvider
    queue: JobQueue
    clock: Clock
    provisioner: Provisioner
    deleter: Deleter

    async def reconcile(self) -> ReconcileReport:
        """One pass; idempotent, and safe beside running jobs (re-queuing a pending job is a no-op)."""
        report = ReconcileReport()
        steps = (
            ("re-queue or fail", "provisions", self._provisions),
            ("expire", "instances past their TTL", self._expired),
            ("re-queue", "cleanups", self._cleanups),
            ("collect", "orphans and ghosts", self._servers),
        )
        for what, subject, step in steps:
            async with self._isolated(report, what, subject):
                await step(report)
        logger.info("reconciled: %s", report)
        return report

    async def _provisions(self, report: ReconcileReport) -> None:
        now = self.clock.now()
        async with self.database.begin() as uow:
            lost = await uow.ledger.without_instance(now - timedelta(seconds=self.policy.lost_job_grace_seconds))
            in_flight = await uow.instances.provisioning_since(now)
        for entry in lost:
            async with self._isolated(report, "re-queue provision", entry.instance_id):
                await self.queue.enqueue_provision(entry.instance_id)
                report.requeued_provisions += 1
        timeout = timedelta(seconds=self.policy.provision_timeout_seconds)
        for instance in in_flight:
            async with self._isolated(report, "stale provision", instance.id):
                if instance.created_at + timeout < now:
                    reason = f"not running after {self.policy.provision_timeout_seconds} s"
                    await self.provisioner.fail(instance.id, reason)
                    report.failed_provisions += 1
                else:
                    await self.queue.enqueue_provision(instance.id)

    async def _expired(self, report: ReconcileReport) -> None:
        """Soft-delete instances past their TTL: a CI run cancelled before its delete step leaks no server."""
        cutoff = self.clock.now() - timedelta(seconds=self.policy.instance_ttl_seconds)
        async with self.database.begin() as uow:
            expired = await uow.instances.expired(cutoff)
        for candidate in expired:
            async with self._isolated(report, "expire", candidate.id):
                async with self.database.begin() as uow:
                    instance = await uow.instances.get(candidate.id, lock=True)
                    if instance is None or instance.is_deleted:
                        continue
                    await self.deleter.soft_delete(uow, instance)
                    await uow.commit()
                await self.queue.enqueue_cleanup(instance.id)
                report.expired_instances += 1

    async def _cleanups(self, report: ReconcileReport) -> None:
        async with self.database.begin() as uow:
            deleting = await uow.instances.deleting()
        for instance in deleting:
            async with self._isolated(report, "re-queue cleanup", instance.id):
                await self.queue.enqueue_cleanup(instance.id)
                report.requeued_cleanups += 1

    async def _servers(self, report: ReconcileReport) -> None:
        """Delete our servers that belong to no live instance (orphans); fail instances whose server is gone.

        The servers are listed before the instances are read: a server listed was created after its instance row
        was inserted, so a provision in flight is never mistaken for an orphan. A server missing from the list is
        confirmed gone with a read of its own before its instance is failed (it may have been created since).
        """
        servers = await self.cloud.find_servers({MANAGED_BY_LABEL: MANAGED_BY_VALUE})
        async with self.database.begin() as uow:
            live = await uow.instances.live_ids()
            expecting = await uow.instances.expecting_server()
            ours = [server for server in servers if await self._is_ours(uow, server)]
        for server in ours:
            if _instance_id(server) in live:
                continue
            async with self._isolated(report, "delete orphan server", server.id):
                logger.warning("deleting orphan server %s (%s)", server.id, server.name)
                await self.cloud.delete_server(server.id)
                report.orphans_deleted += 1
        listed = {server.id for server in servers}
        for instance in expecting:
            if instance.provider_server_id is None or instance.provider_server_id in listed:
                continue
            async with self._isolated(report, "check the server of", instance.id):
                if await self.cloud.get_server(instance.provider_server_id) is None:
                    await self.provisioner.fail(instance.id, GHOST_REASON)
                    report.ghosts_failed += 1

    async def _is_ours(self, uow: UnitOfWork, server: CloudServer) -> bool:
        """Labelled for our customer; or, from before servers carried that label, for one of our instances."""
        if (customer := server.labels.get(CUSTOMER_LABEL)) is not None:
            return customer == str(self.scope.customer_id)
        instance_id = _instance_id(server)
        return instance_id is not None and await uow.ledger.get_by_instance(instance_id) is not None

    @contextlib.asynccontextmanager
    async def _isolated(self, report: ReconcileReport, what: str, subject: object) -> AsyncIterator[None]:
        """Run one item of the pass; if it fails, log it in one line, count it and go on with the rest."""
        try:
            yield
        except SmokeError as error:
            logger.warning("reconcile could not %s %s: %s", what, subject, error)
            report.errors += 1


def _instance_id(server: CloudServer) -> uuid.UUID | None:
    try:
        return uuid.UUID(server.labels.get(INSTANCE_ID_LABEL, ""))
    except ValueError:
        return None
