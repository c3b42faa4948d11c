"""Smoke Delete: the customer delete recipe (soft delete), then the cleanup job removes the server."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import CustomerScope, DeletionReceipt, Instance, InstanceStatus
from smoke.domain.ports import Clock, Database, JobQueue, UnitOfWork

__all__ = ("Deleter",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleter:
    """Smoke Delete for the one smoke customer."""

    scope: CustomerScope
    database: Database
    queue: JobQueue
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
        async with self.database.begin() as uow:
            entry = await uow.ledger.get_by_instance(instance_id)
            if entry is None:
                raise InstanceNotFound
            instance = await uow.instances.claim(Instance.new(entry, self.scope, self.clock.now()))
            if instance.is_deleted:
                return DeletionReceipt(instance.id, instance.status)
            await self.soft_delete(uow, instance)
            await uow.commit()
        await self.queue.enqueue_cleanup(instance_id)
        return DeletionReceipt(instance_id, InstanceStatus.DELETING)

    async def soft_delete(self, uow: UnitOfWork, instance: Instance) -> Instance:
        """Apply the recipe inside ``uow`` (the caller commits): mark deleted, free the name, revoke the agent."""
        deleted = instance.soft_deleted(self.clock.now())
        await uow.instances.save(deleted)
        await uow.credentials.revoke(instance.id)
        return deleted
