"""The ports: what the domain needs from the world, each with its contract.

Every port is a ``Protocol`` whose methods are abstract, so an adapter that subclasses it and forgets a method cannot
be instantiated, and mypy checks each implementation against the contract at its definition.

Customer scope: every store is bound to the one smoke customer when it is built. None of its methods can read,
change or even count a row of another customer; the database may be the platform's, shared with real customers.

Transactions: ``Database.begin()`` opens a unit of work, an async context manager whose write-side stores
(``ledger``, ``instances``, ``credentials``) share one transaction. Nothing they write is visible to anyone else
until ``commit``; leaving the block without committing discards it and releases its locks. A unit of work is
never held across a wait: no sleep, no call to the cloud or an agent inside one. The read-side ports
(``InstanceReader``, ``UsageEventStore``) read committed data and write, when they do, in a transaction of their own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol
from uuid import UUID

from smoke.domain.budget import RequestKind, Spend
from smoke.domain.models import (
    AgentBoot,
    AgentToken,
    ChatEvent,
    CloudFirewall,
    CloudServer,
    FirewallRule,
    Instance,
    InstancePage,
    InstanceStatus,
    InstanceSummary,
    InstanceView,
    LedgerEntry,
    PageCursor,
    Placement,
    PollResult,
    ServerSpec,
    ServerTypeOffer,
    StatusChange,
    UsageCount,
    UsageEvent,
)

__all__ = (
    "AgentClient",
    "AgentCredentialStore",
    "Catalog",
    "ChatStream",
    "Clock",
    "CloudProvider",
    "Database",
    "InstanceReader",
    "InstanceRepository",
    "JobQueue",
    "ProvisionLedger",
    "ReadinessProbe",
    "RequestBudget",
    "TokenIssuer",
    "UnitOfWork",
    "UsageEventStore",
    "UserDataRenderer",
)


class ProvisionLedger(Protocol):
    """The idempotency record of the smoke customer's provision requests: one entry per key, never two."""

    @abstractmethod
    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        """The entry of that key, or None."""

    @abstractmethod
    async def get_by_instance(self, instance_id: UUID) -> LedgerEntry | None:
        """The entry that allocated ``instance_id``, or None (also for another customer's instance)."""

    @abstractmethod
    async def lock(self) -> None:
        """Serialise the customer's submissions: block until no other unit of work holds this lock.

        Held until the unit of work ends, so a check-then-insert under it is atomic.
        """

    @abstractmethod
    async def count_live(self) -> int:
        """Entries that hold a slot of the live-instance cap.

        An entry holds a slot until its instance is soft-deleted or has failed; an entry whose instance row the
        worker has not inserted yet holds one too.
        """

    @abstractmethod
    async def add(self, entry: LedgerEntry) -> None:
        """Record an accepted request. Raises ``IdempotencyKeyReused`` if the key has an entry already."""

    @abstractmethod
    async def without_instance(self, created_before: datetime) -> list[LedgerEntry]:
        """Entries accepted before ``created_before`` whose instance row was never inserted (lost jobs)."""


class InstanceRepository(Protocol):
    """The smoke customer's instances and their status history, for the write side."""

    @abstractmethod
    async def claim(self, instance: Instance) -> Instance:
        """Insert ``instance`` unless a row with its id exists; return the stored row, locked until the unit ends.

        Safe under concurrency: two units claiming the same id both get the one stored row, one after the other.
        Inserting records the first status-history entry. Raises ``InstanceNotFound`` if the id is another
        customer's.
        """

    @abstractmethod
    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        """The instance with that id, soft-deleted or not; with ``lock``, locked until the unit ends."""

    @abstractmethod
    async def save(self, instance: Instance) -> None:
        """Store the instance's fields; when its status changed, append a status-history entry with its reason.

        The row must be locked in this unit of work (``claim``, or ``get(..., lock=True)``): a read-modify-write
        without the lock would lose a change made meanwhile. Raises ``InstanceNotFound`` if it is not ours.
        """

    @abstractmethod
    async def note(self, instance: Instance, reason: str) -> None:
        """Append a history entry for the instance's current status with ``reason``.

        For what happened without changing the status (a failed attempt that will be retried). A no-op if the last
        entry says the same. The row must be locked in this unit of work, as for ``save``.
        """

    @abstractmethod
    async def provisioning_since(self, created_before: datetime) -> list[Instance]:
        """Instances still ``provisioning``, not soft-deleted, created before ``created_before``."""

    @abstractmethod
    async def deleting(self) -> list[Instance]:
        """Soft-deleted instances whose server is not confirmed gone yet (status ``deleting``)."""

    @abstractmethod
    async def expired(self, created_before: datetime) -> list[Instance]:
        """Instances not soft-deleted yet that were created before ``created_before``."""

    @abstractmethod
    async def expecting_server(self) -> list[Instance]:
        """Instances whose recorded server should exist: ``provisioning`` or ``running``, not soft-deleted."""

    @abstractmethod
    async def live_ids(self) -> set[UUID]:
        """Ids of the instances whose server may exist on purpose: not soft-deleted and not failed."""


class AgentCredentialStore(Protocol):
    """The digests of the smoke customer's agent tokens, one per instance; deleting them revokes an agent."""

    @abstractmethod
    async def add(self, instance_id: UUID, digest: str) -> None:
        """Store the digest of the instance's agent token; replaces a previous one."""

    @abstractmethod
    async def revoke(self, instance_id: UUID) -> None:
        """Delete the instance's credentials; a no-op when there are none."""

    @abstractmethod
    async def instance_for(self, digest: str) -> UUID | None:
        """The instance whose agent token has this digest, or None when unknown, revoked or another customer's."""


class UnitOfWork(Protocol):
    """One transaction of the smoke customer's write-side stores (see the module docstring)."""

    ledger: ProvisionLedger
    instances: InstanceRepository
    credentials: AgentCredentialStore

    @abstractmethod
    async def commit(self) -> None:
        """Make every write of this unit durable and visible. Raises ``StorageUnavailable`` if it cannot."""


class Database(Protocol):
    """Where units of work come from."""

    @abstractmethod
    def begin(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """Open a unit of work: ``async with database.begin() as uow: ...; await uow.commit()``.

        Leaving the block without ``commit`` (an exception included) rolls it back. Raises ``StorageUnavailable``.
        """


class InstanceReader(Protocol):
    """The smoke customer's committed instance state, for the reads (status, poll, events, list, chat, dashboard)."""

    @abstractmethod
    async def view(self, instance_id: UUID) -> InstanceView | None:
        """The instance as Smoke Status shows it; ``queued`` while only its request is recorded; None if not ours."""

    @abstractmethod
    async def poll(self, idempotency_key: str) -> PollResult:
        """``found`` once the instance row of that key exists; never raises for an unknown key."""

    @abstractmethod
    async def instance(self, instance_id: UUID) -> Instance | None:
        """The whole instance row, or None if the customer has no such instance row."""

    @abstractmethod
    async def owns(self, instance_id: UUID) -> bool:
        """Whether the customer was allocated that instance id (row inserted or not)."""

    @abstractmethod
    async def events(self, instance_id: UUID) -> list[StatusChange] | None:
        """The instance's history, oldest first, starting with ``queued`` when its request was accepted.

        None if the customer was never allocated that id.
        """

    @abstractmethod
    async def page(self, *, status: InstanceStatus | None, limit: int, before: PageCursor | None) -> InstancePage:
        """The customer's instances, newest request first, ``limit`` at most, those accepted before ``before``."""

    @abstractmethod
    async def recent(self, *, since: datetime, limit: int) -> list[InstanceSummary]:
        """The customer's instances whose request was accepted at ``since`` or later, newest first, ``limit`` at most.

        Each as ``page`` shows it: the dashboard's aggregates are computed from these.
        """

    @abstractmethod
    async def timelines(self, instance_ids: Collection[UUID]) -> dict[UUID, list[StatusChange]]:
        """The history of each of ``instance_ids``, as ``events`` gives it, in one call.

        Ids never allocated to the customer are left out of the result.
        """


class UsageEventStore(Protocol):
    """The authoritative ``llm_usage_events`` table."""

    @abstractmethod
    async def record(self, event: UsageEvent) -> bool:
        """Store one LLM call; False when that ``request_id`` was already recorded for the instance.

        Idempotent under concurrency: however many times and however concurrently the same report arrives, it is
        stored once. Durable when it returns.
        """

    @abstractmethod
    async def count_window(self, instance_id: UUID, window_seconds: int) -> UsageCount:
        """The instance's events with ``created_at`` in ``[now - window_seconds, now]`` on the store's clock.

        ``providers`` are distinct and sorted.
        """


class Catalog(Protocol):
    """Manifests, regions and tiers a request may name."""

    @abstractmethod
    async def resolve(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        """Resolve the three ids.

        Raises ``UnknownCatalogEntry`` for the first (manifest, region, tier) that is unknown or retired.
        """


class UserDataRenderer(Protocol):
    """The cloud-init user data that boots an agent VPS."""

    @abstractmethod
    def render(self, boot: AgentBoot) -> str:
        """``#cloud-config`` that writes the agent's configuration and, for a reference manifest, runs the agent."""


class JobQueue(Protocol):
    """The background jobs. A job's key is its task id; enqueuing a key that is still pending is a no-op."""

    @abstractmethod
    async def enqueue_provision(self, instance_id: UUID) -> str:
        """Queue the provision job of the instance; return its task id. Raises ``StorageUnavailable``."""

    @abstractmethod
    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        """Queue the cleanup job of the instance; return its task id. Raises ``StorageUnavailable``."""


class CloudProvider(Protocol):
    """Servers at a cloud provider. Transient failures are retried inside the adapter.

    Every method raises ``CloudTransientError`` when retries are exhausted and ``CloudError`` for a refusal.
    """

    @abstractmethod
    async def create_server(self, spec: ServerSpec) -> CloudServer:
        """Create a server and return it as soon as the provider answers (it need not run yet).

        Raises ``CloudServerNameTaken`` when a server of that name exists. Not idempotent: callers look up by
        label first and adopt the named server on ``CloudServerNameTaken``.
        """

    @abstractmethod
    async def get_server(self, server_id: int) -> CloudServer | None:
        """The server, or None if it does not exist."""

    @abstractmethod
    async def find_servers(self, labels: Mapping[str, str]) -> list[CloudServer]:
        """Every server carrying all of ``labels`` (all pages)."""

    @abstractmethod
    async def find_server_by_name(self, name: str) -> CloudServer | None:
        """The server of that exact name, or None."""

    @abstractmethod
    async def delete_server(self, server_id: int) -> bool:
        """Delete the server and wait until it is gone; False if it did not exist (which counts as done)."""

    @abstractmethod
    async def server_type(self, name: str) -> ServerTypeOffer | None:
        """The server type of that name and where it can be ordered now, or None if the cloud has no such type."""

    @abstractmethod
    async def location_exists(self, name: str) -> bool:
        """Whether the cloud has a location of that name."""

    @abstractmethod
    async def image_exists(self, image: str, architecture: str) -> bool:
        """Whether an image of that name (or numeric id) exists for the architecture."""

    @abstractmethod
    async def ssh_key_exists(self, name_or_id: str) -> bool:
        """Whether the project has an SSH key of that name (or numeric id)."""

    @abstractmethod
    async def find_firewalls(self, labels: Mapping[str, str]) -> list[CloudFirewall]:
        """Every firewall carrying all of ``labels``, with its inbound TCP rules."""

    @abstractmethod
    async def create_firewall(
        self, name: str, labels: Mapping[str, str], rules: tuple[FirewallRule, ...]
    ) -> CloudFirewall:
        """Create a firewall. Raises ``CloudServerNameTaken`` when one of that name exists (adopt it by labels)."""

    @abstractmethod
    async def set_firewall_rules(self, firewall_id: int, rules: tuple[FirewallRule, ...]) -> None:
        """Replace the firewall's rules with ``rules`` (its servers follow)."""


class RequestBudget(Protocol):
    """The cloud project's request bucket, shared by every worker of a deployment (see :mod:`smoke.domain.budget`).

    A store that cannot be reached grants every request (ticket 0) rather than stopping the cloud calls: the cloud's
    own 429s and the adapter's backoff still apply.
    """

    @abstractmethod
    async def spend(self, kind: RequestKind) -> Spend:
        """Spend one request of ``kind`` if the bucket allows it now; else nothing, and how long to wait."""

    @abstractmethod
    async def correct(self, ticket: int, capacity: int, remaining: int) -> None:
        """The answer to the request of ``ticket`` said the bucket holds ``remaining`` of ``capacity``."""


class ChatStream(Protocol):
    """The events of one chat turn, as the agent sends them; ``aclose`` ends the turn's request at once."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        """Iterate the events as they arrive. Raises ``AgentStreamBroken`` if the stream fails midway."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the upstream request; idempotent."""


class AgentClient(Protocol):
    """The agent running on an instance's VPS (the agent protocol of docs/api.md)."""

    @abstractmethod
    async def is_healthy(self, base_url: str) -> bool:
        """Whether ``GET {base_url}/healthz`` answers 200 now; never raises for an unreachable agent."""

    @abstractmethod
    async def open_chat(self, base_url: str, token: str, message: str) -> ChatStream:
        """Send one chat turn; return as soon as the agent has accepted it (2xx), its events still to come.

        Raises ``AgentUnavailable`` if the agent cannot be reached or answers otherwise, before anything streamed.
        """


class Clock(Protocol):
    """Time, and waiting: the one place services read the time or sleep, so tests can move it."""

    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock moves itself forward instead)."""


class TokenIssuer(Protocol):
    """Agent tokens: derivable by the control plane, stored only as digests."""

    @abstractmethod
    def agent_token(self, instance_id: UUID) -> AgentToken:
        """The agent token of the instance and its digest; the same for every call with that id."""

    @abstractmethod
    def digest(self, token: str) -> str:
        """The digest stored for ``token``."""


class ReadinessProbe(Protocol):
    """Whether the dependencies a request needs can be reached (``/readyz``)."""

    @abstractmethod
    async def unready(self) -> list[str]:
        """Names of the dependencies (``database``, ``queue``) that cannot be reached now; empty when ready."""
