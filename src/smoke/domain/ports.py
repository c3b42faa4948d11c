"""The ports: what the domain needs from the world, each with its contract.

Every port is a ``Protocol`` whose methods are abstract, so an adapter that subclasses it and forgets a method cannot
be instantiated, and mypy checks each implementation against the contract at its definition.

Transactions: the write-side stores (``ProvisionLedger``, ``InstanceRepository``, ``AgentCredentialStore``) of one
unit of work share one transaction; nothing they write is visible to others until ``UnitOfWork.commit``. Ending a
unit of work without committing discards its writes. The read-side ports (``InstanceReader``, ``UsageEventStore``)
read committed data and write, when they do, in a transaction of their own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Protocol
from uuid import UUID

from smoke.domain.models import (
    AgentToken,
    ChatEvent,
    CloudServer,
    Instance,
    InstanceView,
    LedgerEntry,
    Placement,
    PollResult,
    ServerSpec,
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
    "InstanceReader",
    "InstanceRepository",
    "JobQueue",
    "ProvisionLedger",
    "ReadinessProbe",
    "TokenIssuer",
    "UnitOfWork",
    "UsageEventStore",
)


class UnitOfWork(Protocol):
    """One database transaction shared by the write-side stores of a request or a job."""

    @abstractmethod
    async def commit(self) -> None:
        """Make every write of this unit durable and visible. Raises ``StorageUnavailable`` if it cannot."""

    @abstractmethod
    async def rollback(self) -> None:
        """Discard every write since the last commit and release the locks taken."""


class ProvisionLedger(Protocol):
    """The idempotency record of provision requests: one entry per (customer, key), never two."""

    @abstractmethod
    async def get(self, customer_id: UUID, idempotency_key: str) -> LedgerEntry | None:
        """The entry of that key, or None."""

    @abstractmethod
    async def get_by_instance(self, customer_id: UUID, instance_id: UUID) -> LedgerEntry | None:
        """The entry that allocated ``instance_id`` for this customer, or None (also for another customer's)."""

    @abstractmethod
    async def lock(self, customer_id: UUID) -> None:
        """Serialise the customer's submissions: block until no other unit of work holds this lock.

        Held until the unit of work commits or rolls back, so a check-then-insert under it is atomic.
        """

    @abstractmethod
    async def count_live(self, customer_id: UUID) -> int:
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
    """Instances, their status history, for the write side (inside a unit of work)."""

    @abstractmethod
    async def claim(self, instance: Instance) -> Instance:
        """Insert ``instance`` unless a row with its id exists; return the stored row, locked until the unit ends.

        Safe under concurrency: two units claiming the same id both get the one stored row, one after the other.
        Inserting records the first status-history entry.
        """

    @abstractmethod
    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        """The instance with that id, soft-deleted or not; with ``lock``, locked until the unit ends."""

    @abstractmethod
    async def save(self, instance: Instance) -> None:
        """Store the instance's fields; when its status changed, append a status-history entry."""

    @abstractmethod
    async def history(self, instance_id: UUID) -> list[StatusChange]:
        """The status history of the instance, oldest first."""

    @abstractmethod
    async def provisioning_since(self, created_before: datetime) -> list[Instance]:
        """Instances still ``provisioning`` that were created before ``created_before``."""

    @abstractmethod
    async def deleting(self) -> list[Instance]:
        """Soft-deleted instances whose server is not confirmed gone yet (status ``deleting``)."""

    @abstractmethod
    async def expired(self, created_before: datetime) -> list[Instance]:
        """Instances not soft-deleted yet that were created before ``created_before``."""

    @abstractmethod
    async def live_ids(self) -> set[UUID]:
        """Ids of the instances whose server may exist on purpose: not soft-deleted and not failed."""


class AgentCredentialStore(Protocol):
    """The digests of agent tokens, one per instance; deleting them is what revokes an agent."""

    @abstractmethod
    async def add(self, instance_id: UUID, digest: str) -> None:
        """Store the digest of the instance's agent token; replaces a previous one."""

    @abstractmethod
    async def revoke(self, instance_id: UUID) -> None:
        """Delete the instance's credentials; a no-op when there are none."""

    @abstractmethod
    async def instance_for(self, digest: str) -> UUID | None:
        """The instance whose agent token has this digest, or None when unknown or revoked."""


class InstanceReader(Protocol):
    """Committed instance state for the hot read paths (status, poll). Scoped to one customer."""

    @abstractmethod
    async def view(self, customer_id: UUID, instance_id: UUID) -> InstanceView | None:
        """The instance as Smoke Status shows it, or None if this customer has no such instance row."""

    @abstractmethod
    async def poll(self, customer_id: UUID, idempotency_key: str) -> PollResult:
        """``found`` once the instance row of that key exists; never raises for an unknown key."""

    @abstractmethod
    async def instance(self, customer_id: UUID, instance_id: UUID) -> Instance | None:
        """The whole instance row, or None if this customer has no such instance row."""

    @abstractmethod
    async def owns(self, customer_id: UUID, instance_id: UUID) -> bool:
        """Whether this customer was allocated that instance id (row inserted or not)."""


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
        """Resolve the three ids. Raises ``UnknownCatalogEntry`` for the first unknown one (manifest, region, tier)."""


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


class ChatStream(Protocol):
    """The events of one chat turn, as the agent sends them; ``aclose`` ends the turn's request at once."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        """Iterate the events as they arrive. Raises ``AgentStreamBroken`` if the stream fails midway."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the upstream request; idempotent."""


class AgentClient(Protocol):
    """The agent running on an instance's VPS (SPEC §4)."""

    @abstractmethod
    async def is_healthy(self, base_url: str) -> bool:
        """Whether ``GET {base_url}/healthz`` answers 200 now; never raises for an unreachable agent."""

    @abstractmethod
    async def open_chat(self, base_url: str, token: str, message: str) -> ChatStream:
        """Send one chat turn; return as soon as the agent has accepted it (2xx), its events still to come.

        Raises ``AgentUnavailable`` if the agent cannot be reached or answers otherwise, before anything streamed.
        """


class Clock(Protocol):
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
    @abstractmethod
    async def unready(self) -> list[str]:
        """Names of the dependencies (``database``, ``queue``) that cannot be reached now; empty when ready."""
