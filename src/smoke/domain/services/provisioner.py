"""The provision job: turn an accepted request into a running agent VPS, safely re-runnable."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from smoke.domain.agent_config import AgentUrls
from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError
from smoke.domain.models import AgentBoot, CloudServer, CustomerScope, Instance, InstanceStatus, ServerSpec
from smoke.domain.ports import (
    AgentClient,
    Catalog,
    Clock,
    CloudProvider,
    Database,
    TokenIssuer,
    UserDataRenderer,
)
from smoke.domain.services.cleaner import delete_servers_of
from smoke.domain.services.firewall import AgentFirewall
from smoke.domain.services.notes import note

__all__ = ("ProvisionPolicy", "Provisioner", "ServerWatch")

logger = logging.getLogger("smoke.provisioning")

FAILABLE = frozenset({InstanceStatus.PROVISIONING, InstanceStatus.RUNNING})


@dataclass(frozen=True, slots=True)
class ProvisionPolicy:
    """How a provision job runs: its deadline, where agents report usage, how often it looks, which SSH keys."""

    timeout_seconds: int
    usage_url: str
    """Where agents report their LLM usage (``PUBLIC_URL`` + the usage path)."""
    poll_seconds: float = 1.0
    """How often the job asks the agent, and the first wait before it reads its server."""
    poll_cap_seconds: float = 8.0
    """The longest wait between two reads of the server: each wait doubles from ``poll_seconds`` up to this."""
    ssh_keys: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class ServerWatch:
    """A server's state for a polling job, at the cost of one request for all the jobs of this process that poll.

    A job polling alone reads its server by id. While others polled lately (within two of the longest waits between
    a job's reads), a poll lists the customer's servers instead (one request per 50 servers), and every poll within
    ``poll_seconds`` of that listing is answered from it. A server missing from a listing is read by id: it may
    have been created after the listing was taken.
    """

    scope: CustomerScope
    policy: ProvisionPolicy
    cloud: CloudProvider
    clock: Clock
    _listing: dict[int, CloudServer] = field(default_factory=dict, init=False)
    _listed_at: datetime | None = field(default=None, init=False)
    _polled: dict[int, datetime] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def server(self, server_id: int) -> CloudServer | None:
        """The server as the cloud has it now (or ``poll_seconds`` ago), or None if it does not exist."""
        if not self._in_company(server_id):
            return await self.cloud.get_server(server_id)
        async with self._lock:
            fresh_for = timedelta(seconds=self.policy.poll_seconds)
            if self._listed_at is None or self.clock.now() - self._listed_at > fresh_for:
                listing = await self.cloud.find_servers(self.scope.labels())
                self._listing = {server.id: server for server in listing}
                self._listed_at = self.clock.now()
            listed = self._listing.get(server_id)
        return listed if listed is not None else await self.cloud.get_server(server_id)

    def _in_company(self, server_id: int) -> bool:
        """Note the poll; whether another server was polled lately."""
        now = self.clock.now()
        since = now - timedelta(seconds=2 * self.policy.poll_cap_seconds)
        self._polled = {polled: at for polled, at in self._polled.items() if at >= since}
        self._polled[server_id] = now
        return len(self._polled) > 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioner:
    """Provision one instance: row, credentials, server, wait for it and its agent, then ``running``.

    Safe to run any number of times, concurrently with a delete, after a crash at any point: it looks its server
    up by label before creating one, adopts the server of its name on a name clash, and whoever sees the instance
    soft-deleted after a server exists deletes that server. No unit of work is held while it talks to the cloud or
    the agent, or while it waits.

    Requests to the cloud (a project's budget is 3600 an hour): a label lookup, the create, then reads of the
    server with backoff until it is ``running`` (shared with the other jobs of the process: ``ServerWatch``), and
    none after: from then on only the agent is asked.
    """

    scope: CustomerScope
    policy: ProvisionPolicy
    agent_urls: AgentUrls
    database: Database
    catalog: Catalog
    cloud: CloudProvider
    agents: AgentClient
    tokens: TokenIssuer
    user_data: UserDataRenderer
    firewall: AgentFirewall
    watch: ServerWatch
    clock: Clock

    async def provision(self, instance_id: UUID) -> InstanceStatus | None:
        """Run the provision job of ``instance_id``; return the status it leaves (None: no such request).

        A refusal of the cloud fails the instance at once with the cloud's reason.

        Raises:
            CloudTransientError: the cloud kept failing; noted in the events, the job is retried and resumes.
            StorageUnavailable: the database is unreachable; likewise retried.
        """
        instance = await self._claim(instance_id)
        if instance is None or instance.is_deleted or instance.status is not InstanceStatus.PROVISIONING:
            return instance.status if instance else None
        deadline = instance.created_at + timedelta(seconds=self.policy.timeout_seconds)
        try:
            server = await self._server_of(instance)
            recorded = await self._record_server(instance.id, server)
            if recorded is None:
                return InstanceStatus.DELETING
            instance = recorded
            started = server.is_running
            wait = self.policy.poll_seconds
            next_read = self.clock.now() + timedelta(seconds=wait)
            while self.clock.now() < deadline:
                if not started and self.clock.now() >= next_read:
                    started = await self._has_started(instance)
                    wait = min(2 * wait, self.policy.poll_cap_seconds)
                    next_read = self.clock.now() + timedelta(seconds=wait)
                if started and await self.agents.is_healthy(self.agent_urls.base_url(instance)):
                    return await self._mark_running(instance_id)
                await self.clock.sleep(self.policy.poll_seconds)
                current = await self._current(instance.id)
                if current is None or current.is_deleted:
                    return InstanceStatus.DELETING
                instance = current
            return await self.fail(instance_id, f"not running after {self.policy.timeout_seconds} s")
        except CloudTransientError as error:  # the job is retried, and its failure logged in one line by the worker
            await note(self.database, instance_id, f"retrying: {error.reason}")
            raise
        except CloudError as error:
            return await self.fail(instance_id, error.reason)

    async def fail(self, instance_id: UUID, reason: str) -> InstanceStatus:
        """Delete whatever server the instance has and mark it ``failed`` with ``reason`` (if provisioning or running).

        A cloud that refuses the deletion does not keep the instance from failing: a failed instance holds no
        server on purpose, so reconcile collects what is left as an orphan.
        """
        instance = await self._current(instance_id)
        if instance is not None:
            try:
                await delete_servers_of(self.cloud, instance)
            except CloudError as error:
                logger.warning("server of failed %s not deleted, left for reconcile: %s", instance_id, error)
        async with self.database.begin() as uow:
            instance = await uow.instances.get(instance_id, lock=True)
            if instance is None or instance.is_deleted or instance.status not in FAILABLE:
                return instance.status if instance else InstanceStatus.FAILED
            logger.warning("provision of %s failed: %s", instance_id, reason)
            await uow.instances.save(instance.with_status(InstanceStatus.FAILED, reason))
            await uow.commit()
        return InstanceStatus.FAILED

    async def _claim(self, instance_id: UUID) -> Instance | None:
        async with self.database.begin() as uow:
            entry = await uow.ledger.get_by_instance(instance_id)
            if entry is None:
                return None
            instance = await uow.instances.claim(Instance.new(entry, self.scope, self.clock.now()))
            if instance.status is InstanceStatus.PROVISIONING and not instance.is_deleted:
                await uow.credentials.add(instance.id, self.tokens.agent_token(instance.id).digest)
            await uow.commit()
        return instance

    async def _server_of(self, instance: Instance) -> CloudServer:
        """The instance's server: the recorded one, else the one labelled for it, else a new one."""
        if instance.provider_server_id is not None:
            server = await self.cloud.get_server(instance.provider_server_id)
            if server is not None:
                return server
        existing = await self.cloud.find_servers(instance.selector())
        if existing:
            return existing[0]
        placement = await self.catalog.resolve(instance.manifest_id, instance.region_id, instance.tier_id)
        boot = AgentBoot(
            instance_id=instance.id,
            agent_token=self.tokens.agent_token(instance.id).token,
            usage_url=self.policy.usage_url,
            manifest=placement.manifest,
        )
        spec = ServerSpec(
            name=instance.hostname,
            server_type=placement.server_type,
            image=placement.image,
            location=placement.location,
            labels=instance.labels(),
            user_data=self.user_data.render(boot),
            ssh_keys=self.policy.ssh_keys,
            firewall_ids=await self.firewall.ensure(),
        )
        try:
            return await self.cloud.create_server(spec)
        except CloudServerNameTaken:
            # An earlier attempt created it and its answer was lost: adopt the server of that name.
            adopted = await self.cloud.find_server_by_name(instance.hostname)
            if adopted is None:
                raise CloudTransientError("uniqueness_error", "server name taken but no such server") from None
            return adopted
        except CloudError as error:
            if spec.firewall_ids and error.code == "invalid_input" and "firewall" in error.message:
                self.firewall.forget()  # deleted behind our back: the job's retry creates it again
                raise CloudTransientError(error.code, error.message, provider=error.provider) from None
            raise

    async def _record_server(self, instance_id: UUID, server: CloudServer) -> Instance | None:
        """Store the server id and IPv4; if the instance was deleted meanwhile, delete the server instead."""
        async with self.database.begin() as uow:
            instance = await uow.instances.get(instance_id, lock=True)
            if instance is not None and not instance.is_deleted:
                instance = instance.with_server(server)
                await uow.instances.save(instance)
                await uow.commit()
                return instance
        await self.cloud.delete_server(server.id)
        return None

    async def _has_started(self, instance: Instance) -> bool:
        """Whether the server is ``running``; raise if it is gone or off (it will not come up by itself)."""
        assert instance.provider_server_id is not None
        server = await self.watch.server(instance.provider_server_id)
        if server is None:
            raise CloudError("not_found", "the server disappeared while provisioning")
        if server.status == "off":  # its create or start action failed
            raise CloudError("action_failed", "the server is off: its create or start action failed")
        return server.is_running

    async def _mark_running(self, instance_id: UUID) -> InstanceStatus:
        async with self.database.begin() as uow:
            instance = await uow.instances.get(instance_id, lock=True)
            if instance is None or instance.is_deleted:
                return InstanceStatus.DELETING
            await uow.instances.save(instance.with_status(InstanceStatus.RUNNING))
            await uow.commit()
        return InstanceStatus.RUNNING

    async def _current(self, instance_id: UUID) -> Instance | None:
        async with self.database.begin() as uow:
            return await uow.instances.get(instance_id)
