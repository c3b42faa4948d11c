"""Accept provision requests exactly once per key."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from smoke.domain.errors import IdempotencyKeyReused, LiveInstanceCapReached
from smoke.domain.models import (
    CustomerScope,
    LedgerEntry,
    ProvisionReceipt,
    ProvisionRequest,
    provision_task_id,
)
from smoke.domain.ports import Catalog, Clock, InstanceReader, JobQueue, ProvisionLedger, UnitOfWork

__all__ = ("Provisioner",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioner:
    """Submit provision requests for the one smoke customer."""

    scope: CustomerScope
    max_live_instances: int
    ledger: ProvisionLedger
    catalog: Catalog
    reader: InstanceReader
    queue: JobQueue
    uow: UnitOfWork
    clock: Clock

    async def submit(self, request: ProvisionRequest) -> ProvisionReceipt:
        """Record the request durably, queue its provision job, and return the receipt.

        A replay of an accepted key returns the first receipt and is never refused by the cap.

        Raises:
            UnknownCatalogEntry: a manifest, region or tier id the catalog does not know.
            IdempotencyKeyReused: the key was accepted before with another body.
            LiveInstanceCapReached: accepting it would pass the live-instance cap; nothing is recorded.
            StorageUnavailable: the database or the queue cannot be reached.
        """
        await self.catalog.resolve(request.manifest_id, request.region_id, request.tier_id)
        entry = await self._accepted(request) or await self._record(request)
        if not (await self.reader.poll(self.scope.customer_id, entry.idempotency_key)).found:
            # A replay re-queues a job that may have been lost between commit and enqueue; a pending one is kept.
            await self.queue.enqueue_provision(entry.instance_id)
        return entry.receipt()

    async def _accepted(self, request: ProvisionRequest) -> LedgerEntry | None:
        entry = await self.ledger.get(self.scope.customer_id, request.idempotency_key)
        if entry is not None and entry.fingerprint != request.fingerprint():
            raise IdempotencyKeyReused
        return entry

    async def _record(self, request: ProvisionRequest) -> LedgerEntry:
        await self.ledger.lock(self.scope.customer_id)
        if (entry := await self._accepted(request)) is not None:
            await self.uow.rollback()
            return entry
        if await self.ledger.count_live(self.scope.customer_id) >= self.max_live_instances:
            await self.uow.rollback()
            raise LiveInstanceCapReached(self.max_live_instances)
        instance_id = uuid4()
        entry = LedgerEntry(
            customer_id=self.scope.customer_id,
            idempotency_key=request.idempotency_key,
            fingerprint=request.fingerprint(),
            instance_id=instance_id,
            task_id=provision_task_id(instance_id),
            manifest_id=request.manifest_id,
            region_id=request.region_id,
            tier_id=request.tier_id,
            created_at=self.clock.now(),
        )
        await self.ledger.add(entry)
        await self.uow.commit()
        return entry
