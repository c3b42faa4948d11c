"""The cleanup job: remove a soft-deleted instance's servers, then mark the instance ``deleted``."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import CloudError
from smoke.domain.models import Instance, InstanceStatus
from smoke.domain.ports import CloudProvider, Database
from smoke.domain.services.notes import note

__all__ = ("Cleaner", "delete_servers_of")


async def delete_servers_of(cloud: CloudProvider, instance: Instance) -> int:
    """Delete every server of the instance: the recorded one, else any labelled for it. Returns how many existed.

    An instance has at most one server, since server names are unique in a project and each is named for its
    instance: when the recorded one existed there is nothing to look up.
    """
    if instance.provider_server_id is not None and await cloud.delete_server(instance.provider_server_id):
        return 1
    servers = {server.id for server in await cloud.find_servers(instance.selector())}
    return sum([await cloud.delete_server(server_id) for server_id in sorted(servers)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Cleaner:
    """The cleanup job (worker ``cleanup``)."""

    database: Database
    cloud: CloudProvider

    async def clean(self, instance_id: UUID) -> InstanceStatus | None:
        """Delete the servers of a soft-deleted instance (a server already gone counts as done); set ``deleted``.

        Idempotent. An instance that is not soft-deleted is left alone. Returns the status it leaves. A cloud that
        refuses is noted in the instance's events and raised, so the job is retried (and reconcile re-queues it)
        until the cloud says the server is gone.
        """
        async with self.database.begin() as uow:
            instance = await uow.instances.get(instance_id)
        if instance is None or not instance.is_deleted or instance.status is InstanceStatus.DELETED:
            return instance.status if instance else None
        try:
            await delete_servers_of(self.cloud, instance)
        except CloudError as error:  # the job is retried, and its failure logged in one line by the worker
            await note(self.database, instance_id, f"cleanup failed, retrying: {error.reason}")
            raise
        async with self.database.begin() as uow:
            locked = await uow.instances.get(instance_id, lock=True)
            assert locked is not None
            await uow.instances.save(locked.with_status(InstanceStatus.DELETED))
            await uow.commit()
        return InstanceStatus.DELETED
