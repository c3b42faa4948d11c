"""The provision job: turn an accepted request into a running agent VPS, safely re-runnable."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from smoke.domain.agent_config import agent_base_url, cloud_init
from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError
from smoke.domain.models import CloudServer, CustomerScope, Instance, InstanceStatus, ServerSpec
from smoke.domain.ports import (
    AgentClient,
    AgentCredentialStore,
    Catalog,
    Clock,
    CloudProvider,
    InstanceRepository,
    ProvisionLedger,
    TokenIssuer,
    UnitOfWork,
)
from smoke.domain.services.decommissioner import delete_servers_of

__all__ = ("BuildPolicy", "InstanceBuilder")

logger = logging.getLogger("smoke.provisioning")

Heartbeat = Callable[[], Awaitable[None]]


async def _no_heartbeat() -> None:
    return None


@dataclass(frozen=True, slots=True)
class BuildPolicy:
    timeout_seconds: int
    agent_url_template: str
    public_url: str
    poll_seconds: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceBuilder:
    """Provision one instance: row, credentials, server, wait for it and its agent, then ``running``.

    Safe to run any number of times, concurrently with a delete, after a crash at any point: it looks its server
    up by label before creating one, adopts the server of its name on a name clash, and whoever sees the instance
    soft-deleted after a server exists deletes that server.
    """

    scope: CustomerScope
    policy: BuildPolicy
    ledger: ProvisionLedger
    instances: InstanceRepository
    credentials: AgentCredentialStore
    catalog: Catalog
    cloud: CloudProvider
    agents: AgentClient
    tokens: TokenIssuer
    uow: UnitOfWork
    clock: Clock

    async def build(self, instance_id: UUID, heartbeat: Heartbeat = _no_heartbeat) -> InstanceStatus | None:
        """Run the provision job of ``instance_id``; return the status it leaves (None: no such request).

        Raises:
            CloudTransientError: the cloud kept failing; the job is retried and resumes where it stopped.
            StorageUnavailable: the database is unreachable; likewise retried.
        """
        instance = await self._claim(instance_id)
        if instance is None or instance.is_deleted or instance.status is not InstanceStatus.PROVISIONING:
            return instance.status if instance else None
        deadline = instance.created_at + timedelta(seconds=self.policy.timeout_seconds)
        try:
            server = await self._server_of(instance)
            instance = await self._record_server(instance.id, server)
            if instance is None:
                return InstanceStatus.DELETING
            while self.clock.now() < deadline:
                if await self._is_up(instance):
                    return await self._mark_running(instance_id)
                await heartbeat()
                await self.clock.sleep(self.policy.poll_seconds)
                current = await self._current(instance.id)
                if current is None or current.is_deleted:
                    return InstanceStatus.DELETING
                instance = current
            return await self.fail(instance_id, f"not running after {self.policy.timeout_seconds} s")
        except CloudTransientError:
            raise
        except CloudError as error:
            return await self.fail(instance_id, f"cloud refused: {error}")

    async def fail(self, instance_id: UUID, reason: str) -> InstanceStatus:
        """Delete whatever server the instance has and mark it ``failed`` with ``reason`` (if still provisioning)."""
        instance = await self._current(instance_id)
        if instance is not None:
            await delete_servers_of(self.cloud, instance)
        instance = await self.instances.get(instance_id, lock=True)
        if instance is None or instance.is_deleted or instance.status is not InstanceStatus.PROVISIONING:
            await self.uow.rollback()
            return instance.status if instance else InstanceStatus.FAILED
        logger.warning("provision of %s failed: %s", instance_id, reason)
        await self.instances.save(instance.with_status(InstanceStatus.FAILED, reason))
        await self.uow.commit()
        return InstanceStatus.FAILED

    async def _claim(self, instance_id: UUID) -> Instance | None:
        entry = await self.ledger.get_by_instance(self.scope.customer_id, instance_id)
        if entry is None:
            await self.uow.rollback()
            return None
        instance = await self.instances.claim(Instance.new(entry, self.scope, self.clock.now()))
        if instance.status is InstanceStatus.PROVISIONING and not instance.is_deleted:
            await self.credentials.add(instance.id, self.tokens.agent_token(instance.id).digest)
        await self.uow.commit()
        return instance

    async def _server_of(self, instance: Instance) -> CloudServer:
        """The instance's server: the recorded one, else the one labelled for it, else a new one."""
        if instance.provider_server_id is not None:
            server = await self.cloud.get_server(instance.provider_server_id)
            if server is not None:
                return server
        existing = await self.cloud.find_servers(instance.labels())
        if existing:
            return existing[0]
        placement = await self.catalog.resolve(instance.manifest_id, instance.region_id, instance.tier_id)
        token = self.tokens.agent_token(instance.id).token
        spec = ServerSpec(
            name=instance.hostname,
            server_type=placement.server_type,
            image=placement.image,
            location=placement.location,
            labels=instance.labels(),
            user_data=cloud_init(instance, token, self.policy.public_url),
        )
        try:
            return await self.cloud.create_server(spec)
        except CloudServerNameTaken:
            # An earlier attempt created it and its answer was lost: adopt the server of that name.
            adopted = await self.cloud.find_server_by_name(instance.hostname)
            if adopted is None:
                raise CloudTransientError("uniqueness_error", "server name taken but no such server") from None
            return adopted

    async def _record_server(self, instance_id: UUID, server: CloudServer) -> Instance | None:
        """Store the server id and IPv4; if the instance was deleted meanwhile, delete the server instead."""
        instance = await self.instances.get(instance_id, lock=True)
        if instance is None or instance.is_deleted:
            await self.uow.rollback()
            await self.cloud.delete_server(server.id)
            return None
        instance = instance.with_server(server)
        await self.instances.save(instance)
        await self.uow.commit()
        return instance

    async def _is_up(self, instance: Instance) -> bool:
        assert instance.provider_server_id is not None
        server = await self.cloud.get_server(instance.provider_server_id)
        if server is None:
            raise CloudError("not_found", "the server disappeared while provisioning")
        if server.status == "off":  # its create or start action failed: it will not come up by itself
            raise CloudError("action_failed", "the server is off: its create or start action failed")
        if not server.is_running:
            return False
        return await self.agents.is_healthy(agent_base_url(self.policy.agent_url_template, instance))

    async def _mark_running(self, instance_id: UUID) -> InstanceStatus:
        instance = await self.instances.get(instance_id, lock=True)
        if instance is None or instance.is_deleted:
            await self.uow.rollback()
            return InstanceStatus.DELETING
        await self.instances.save(instance.with_status(InstanceStatus.RUNNING))
        await self.uow.commit()
        return InstanceStatus.RUNNING

    async def _current(self, instance_id: UUID) -> Instance | None:
        instance = await self.instances.get(instance_id)
        await self.uow.rollback()  # a read: hold no transaction while waiting
        return instance
