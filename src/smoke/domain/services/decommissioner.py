"""The cleanup job: remove a soft-deleted instance's server, then mark the instance ``deleted``."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.models import Instance, InstanceStatus
from smoke.domain.ports import CloudProvider, InstanceRepository, UnitOfWork

__all__ = ("Decommissioner", "delete_servers_of")


async def delete_servers_of(cloud: CloudProvider, instance: Instance) -> int:
    """Delete every server of the instance: the recorded one and any labelled for it. Returns how many existed."""
    servers = {server.id for server in await cloud.find_servers(instance.labels())}
    if instance.provider_server_id is not None:
        servers.add(instance.provider_server_id)
    return sum([await cloud.delete_server(server_id) for server_id in sorted(servers)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Decommissioner:
    instances: InstanceRepository
    cloud: CloudProvider
    uow: UnitOfWork

    async def decommission(self, instance_id: UUID) -> InstanceStatus | None:
        """Delete the servers of a soft-deleted instance (a server already gone counts as done); set ``deleted``.

        Idempotent. An instance that is not soft-deleted is left alone. Returns the status it leaves.
        """
        instance = await self.instances.get(instance_id)
        await self.uow.rollback()
        if instance is None or not instance.is_deleted or instance.status is InstanceStatus.DELETED:
            return instance.status if instance else None
        await delete_servers_of(self.cloud, instance)
        locked = await self.instances.get(instance_id, lock=True)
        assert locked is not None
        await self.instances.save(locked.with_status(InstanceStatus.DELETED))
        await self.uow.commit()
        return InstanceStatus.DELETED
