"""Soft-delete instances (the customer delete recipe) and let the cleanup job remove their servers."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import CustomerScope, DeletionReceipt, Instance, InstanceStatus
from smoke.domain.ports import AgentCredentialStore, Clock, InstanceRepository, JobQueue, ProvisionLedger, UnitOfWork

__all__ = ("Cleaner",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cleaner:
    scope: CustomerScope
    ledger: ProvisionLedger
    instances: InstanceRepository
    credentials: AgentCredentialStore
    queue: JobQueue
    uow: UnitOfWork
    clock: Clock

    async def delete(self, instance_id: UUID) -> DeletionReceipt:
        """Soft-delete the instance in one transaction, then queue the cleanup of its server.

        Works in every state, also before the worker has inserted the instance row: the row is then inserted
        already deleted, and the provision job finds it so and creates nothing. Repeating it answers the current
        status and queues nothing new.

        Raises:
            InstanceNotFound: this customer was never allocated that instance id.
            StorageUnavailable: the database or the queue cannot be reached.
        """
        entry = await self.ledger.get_by_instance(self.scope.customer_id, instance_id)
        if entry is None:
            raise InstanceNotFound
        instance = await self.instances.claim(Instance.new(entry, self.scope, self.clock.now()))
        if instance.is_deleted:
            await self.uow.rollback()
            return DeletionReceipt(instance.id, instance.status)
        await self.soft_delete(instance)
        await self.uow.commit()
        await self.queue.enqueue_cleanup(instance.id)
        return DeletionReceipt(instance.id, InstanceStatus.DELETING)

    async def soft_delete(self, instance: Instance) -> Instance:
        """Apply the recipe inside the caller's unit of work: mark deleted, free the name, revoke the agent."""
        deleted = instance.soft_deleted(self.clock.now())
        await self.instances.save(deleted)
        await self.credentials.revoke(instance.id)
        return deleted
