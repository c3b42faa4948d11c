"""Smoke Provision: accept provision requests exactly once per key, within the spend guard."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from smoke.domain.errors import IdempotencyKeyReused, LiveInstanceCapReached
from smoke.domain.models import LedgerEntry, ProvisionReceipt, ProvisionRequest, provision_task_id
from smoke.domain.ports import Catalog, Clock, Database, InstanceReader, JobQueue, UnitOfWork

__all__ = ("ProvisionRequests", "SpendGuard")


@dataclass(frozen=True, slots=True)
class SpendGuard:
    """The live-instance cap (``SMOKE_MAX_LIVE_INSTANCES``)."""

    max_live_instances: int
    """Accepted requests whose instance is not deleted (or failed) yet; past it a request is refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionRequests:
    """Submit provision requests for the one smoke customer."""

    guard: SpendGuard
    database: Database
    catalog: Catalog
    reader: InstanceReader
    queue: JobQueue
    clock: Clock

    async def submit(self, request: ProvisionRequest) -> ProvisionReceipt:
        """Record the request durably, queue its provision job, and return the receipt.

        A replay of an accepted key returns the first receipt and is never refused by the cap.

        Raises:
            UnknownCatalogEntry: a manifest, region or tier id the catalog does not know (or has retired).
            IdempotencyKeyReused: the key was accepted before with another body.
            LiveInstanceCapReached: accepting it would pass the live-instance cap; nothing is recorded.
            StorageUnavailable: the database or the queue cannot be reached.
        """
        await self.catalog.resolve(request.manifest_id, request.region_id, request.tier_id)
        entry = await self._record(request)
        if not (await self.reader.poll(entry.idempotency_key)).found:
            # A replay re-queues a job that may have been lost between commit and enqueue; a pending one is kept.
            await self.queue.enqueue_provision(entry.instance_id)
        return entry.receipt()

    async def _record(self, request: ProvisionRequest) -> LedgerEntry:
        """The entry of the key: the accepted one, or a new one recorded under the customer's lock."""
        async with self.database.begin() as uow:
            if (entry := await _accepted(uow, request)) is not None:
                return entry
            await uow.ledger.lock()
            if (entry := await _accepted(uow, request)) is not None:
                return entry
            if await uow.ledger.count_live() >= self.guard.max_live_instances:
                raise LiveInstanceCapReached(self.guard.max_live_instances)
            instance_id = uuid4()
            entry = LedgerEntry(
                idempotency_key=request.idempotency_key,
                fingerprint=request.fingerprint(),
                instance_id=instance_id,
                task_id=provision_task_id(instance_id),
                manifest_id=request.manifest_id,
                region_id=request.region_id,
                tier_id=request.tier_id,
                created_at=self.clock.now(),
            )
            await uow.ledger.add(entry)
            await uow.commit()
            return entry


async def _accepted(uow: UnitOfWork, request: ProvisionRequest) -> LedgerEntry | None:
    entry = await uow.ledger.get(request.idempotency_key)
    if entry is not None and entry.fingerprint != request.fingerprint():
        raise IdempotencyKeyReused
    return entry
