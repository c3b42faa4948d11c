"""Value objects of the domain: frozen, slotted, compared by value."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from uuid import UUID

__all__ = (
    "AgentBoot",
    "AgentKind",
    "AgentToken",
    "ChatEvent",
    "CloudFirewall",
    "CloudServer",
    "CustomerScope",
    "DeletionReceipt",
    "FirewallRule",
    "Instance",
    "InstancePage",
    "InstanceStatus",
    "InstanceSummary",
    "InstanceView",
    "LedgerEntry",
    "LlmBackend",
    "Manifest",
    "PageCursor",
    "Placement",
    "PollResult",
    "ProvisionReceipt",
    "ProvisionRequest",
    "ServerSpec",
    "ServerTypeOffer",
    "StatusChange",
    "UsageCount",
    "UsageEvent",
    "cleanup_task_id",
    "provision_task_id",
)

HOSTNAME_PREFIX = "smoke-"
MANAGED_BY_LABEL = "managed-by"
MANAGED_BY_VALUE = "smoke"
INSTANCE_ID_LABEL = "smoke-instance-id"
CUSTOMER_LABEL = "smoke-customer-id"


def provision_task_id(instance_id: UUID) -> str:
    """The task id of an instance's provision job: deterministic, so re-queuing it is a no-op while it is pending."""
    return f"provision:{instance_id}"


def cleanup_task_id(instance_id: UUID) -> str:
    """The task id of an instance's cleanup job: deterministic, so re-queuing it is a no-op while it is pending."""
    return f"cleanup:{instance_id}"


class InstanceStatus(enum.StrEnum):
    """Where an instance is: ``provisioning`` → ``running`` | ``failed``; then ``deleting`` → ``deleted``.

    ``queued`` is never stored: it is how an accepted request whose instance row the worker has not inserted yet
    reads, so that every endpoint tells the same story about an id it allocated.
    """

    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class CustomerScope:
    """The one smoke customer every request acts for; it comes from settings, never from a request."""

    customer_id: UUID
    tenant_id: UUID
    subscription_id: UUID

    def labels(self) -> dict[str, str]:
        """The labels of every cloud resource smoke creates for this customer: its servers and its firewall."""
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CUSTOMER_LABEL: str(self.customer_id)}


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """What a caller may choose about a new instance, and the key that makes asking twice safe."""

    idempotency_key: str
    manifest_id: str
    region_id: str
    tier_id: str

    def fingerprint(self) -> str:
        """Digest of everything but the key: the same key with another fingerprint is a reused key."""
        body = json.dumps([self.manifest_id, self.region_id, self.tier_id], separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


class AgentKind(enum.StrEnum):
    """Who runs the agent on a manifest's server."""

    REFERENCE = "reference"
    """cloud-init installs and starts smoke's reference agent on a stock image."""
    IMAGE = "image"
    """The image runs its own agent; smoke only writes its configuration."""


@dataclass(frozen=True, slots=True)
class LlmBackend:
    """An OpenAI-compatible endpoint the reference agent streams from; the key's value lives in a setting."""

    provider: str
    base_url: str
    model: str
    api_key_setting: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What runs on an instance's server: the image, who runs the agent and how it is reached."""

    id: str
    image: str
    agent: AgentKind = AgentKind.REFERENCE
    agent_port: int = 8080
    user_data: str | None = None
    """More cloud-config, merged into what smoke generates."""
    llm: LlmBackend | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """A request resolved against the catalog: what the cloud is asked for."""

    manifest: Manifest
    region_id: str
    tier_id: str
    location: str
    server_type: str

    @property
    def image(self) -> str:
        """The image the manifest runs: a name, or the numeric id of a snapshot."""
        return self.manifest.image


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """The durable record of an accepted provision request (the idempotency record) of the smoke customer."""

    idempotency_key: str
    fingerprint: str
    instance_id: UUID
    task_id: str
    manifest_id: str
    region_id: str
    tier_id: str
    created_at: datetime

    def receipt(self) -> ProvisionReceipt:
        """The answer every replay of the key gets."""
        return ProvisionReceipt(self.idempotency_key, self.instance_id, self.task_id)


@dataclass(frozen=True, slots=True)
class ProvisionReceipt:
    """The answer to an accepted provision request; identical for every replay of its key."""

    idempotency_key: str
    instance_id: UUID
    task_id: str


@dataclass(frozen=True, slots=True)
class PollResult:
    """What is known of a key: ``found`` once the worker has inserted the instance row."""

    found: bool
    instance_id: UUID | None = None
    status: InstanceStatus | None = None


@dataclass(frozen=True, slots=True)
class InstanceView:
    """The read model of one instance, as Smoke Status shows it."""

    id: UUID
    hostname: str
    status: InstanceStatus


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One instance as the list shows it: where it is, what it was asked for, when it got there, why it failed."""

    id: UUID
    hostname: str
    status: InstanceStatus
    manifest_id: str
    region_id: str
    tier_id: str
    created_at: datetime
    """When its provision request was accepted."""
    running_at: datetime | None
    deleted_at: datetime | None
    reason: str | None

    @property
    def provision_seconds(self) -> float | None:
        """From the request being accepted to the instance running; None if it never ran."""
        return None if self.running_at is None else (self.running_at - self.created_at).total_seconds()


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page of the newest-first list ended: the next page holds what was accepted before it.

    Written as ``<microseconds since the epoch>_<instance id as 32 hex digits>`` (``PATTERN``): every string of that
    form is a cursor, so a client can never build one the list refuses.
    """

    created_at: datetime
    instance_id: UUID

    PATTERN: ClassVar[str] = r"^[0-9]{1,16}_[0-9a-f]{32}$"

    def encode(self) -> str:
        """The cursor as the list writes it in ``next_before``."""
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.instance_id.hex}"

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """The cursor ``encode`` wrote. Raises ``ValueError`` for a string not of ``PATTERN``."""
        if re.fullmatch(cls.PATTERN, text) is None:
            raise ValueError("not a cursor of this list: pass the next_before of the previous page")
        micros, instance_id = text.split("_")
        return cls(_EPOCH + timedelta(microseconds=int(micros)), UUID(hex=instance_id))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InstancePage:
    """One page of the newest-first list; ``next_before`` is where the next page starts (None: no more)."""

    instances: list[InstanceSummary]
    next_before: PageCursor | None


@dataclass(frozen=True, slots=True)
class DeletionReceipt:
    """The answer to Smoke Delete: the instance and the status it is in now."""

    instance_id: UUID
    status: InstanceStatus


@dataclass(frozen=True, slots=True)
class Instance:
    """A customer's agent VPS, from the first provisioning step until its server is gone."""

    id: UUID
    customer_id: UUID
    tenant_id: UUID
    subscription_id: UUID
    hostname: str
    status: InstanceStatus
    manifest_id: str
    region_id: str
    tier_id: str
    created_at: datetime
    provider_server_id: int | None = None
    ipv4: str | None = None
    failure_reason: str | None = None
    deleted_at: datetime | None = None

    @staticmethod
    def hostname_for(instance_id: UUID) -> str:
        """The hostname, and so the server name, of an instance: deterministic, so a re-run finds its server."""
        return f"{HOSTNAME_PREFIX}{instance_id.hex[:12]}"

    @staticmethod
    def queued_view(instance_id: UUID) -> InstanceView:
        """How an accepted request reads before the worker has inserted its instance row."""
        return InstanceView(instance_id, Instance.hostname_for(instance_id), InstanceStatus.QUEUED)

    @classmethod
    def new(cls, entry: LedgerEntry, scope: CustomerScope, now: datetime) -> Instance:
        """The row the provision job inserts for an accepted request."""
        return cls(
            id=entry.instance_id,
            customer_id=scope.customer_id,
            tenant_id=scope.tenant_id,
            subscription_id=scope.subscription_id,
            hostname=cls.hostname_for(entry.instance_id),
            status=InstanceStatus.PROVISIONING,
            manifest_id=entry.manifest_id,
            region_id=entry.region_id,
            tier_id=entry.tier_id,
            created_at=now,
        )

    @property
    def is_deleted(self) -> bool:
        """Soft-deleted: the caller (or the TTL) asked for it to go; its server is going or gone."""
        return self.deleted_at is not None

    def soft_deleted(self, now: datetime) -> Instance:
        """The instance after the soft-delete recipe: status ``deleting``, hostname suffixed to free the name."""
        return dataclasses.replace(
            self,
            deleted_at=now,
            status=InstanceStatus.DELETING,
            hostname=f"{self.hostname}-deleted-{int(now.timestamp())}",
        )

    def with_server(self, server: CloudServer) -> Instance:
        """The instance with the server the cloud created for it (its id and IPv4)."""
        return dataclasses.replace(self, provider_server_id=server.id, ipv4=server.ipv4 or self.ipv4)

    def with_status(self, status: InstanceStatus, reason: str | None = None) -> Instance:
        """The instance in ``status``; a failure ``reason`` is kept once given."""
        return dataclasses.replace(self, status=status, failure_reason=reason or self.failure_reason)

    def view(self) -> InstanceView:
        """The instance as Smoke Status shows it."""
        return InstanceView(self.id, self.hostname, self.status)

    def labels(self) -> dict[str, str]:
        """The labels its server carries: who manages it, for which customer, and which instance it belongs to."""
        return {**self.selector(), CUSTOMER_LABEL: str(self.customer_id)}

    def selector(self) -> dict[str, str]:
        """The labels that find its servers, also those created before servers carried the customer label."""
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_ID_LABEL: str(self.id)}


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of an instance's status history."""

    instance_id: UUID
    status: InstanceStatus
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What the cloud is asked to create."""

    name: str
    server_type: str
    image: str
    location: str
    labels: dict[str, str]
    user_data: str
    ssh_keys: tuple[str, ...] = ()
    """Names or ids of the project's SSH keys to install; with none, Hetzner mails a root password."""
    firewall_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerTypeOffer:
    """A server type as the cloud sells it: its CPU architecture and where it can be ordered now."""

    name: str
    architecture: str
    orderable_in: frozenset[str]


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """Inbound TCP on ``port`` from ``source_ips`` (CIDRs), and nothing else."""

    port: int
    source_ips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloudFirewall:
    """A firewall as the cloud reports it, with the inbound TCP rules smoke reads."""

    id: int
    name: str
    labels: dict[str, str]
    rules: tuple[FirewallRule, ...]


@dataclass(frozen=True, slots=True)
class CloudServer:
    """A server as the cloud reports it."""

    id: int
    name: str
    status: str
    labels: dict[str, str]
    ipv4: str | None = None

    @property
    def is_running(self) -> bool:
        """Whether the server reports ``running`` (its agent may still be booting)."""
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class AgentBoot:
    """What an agent VPS is told at boot (its cloud-init user data): who it is and where it reports usage."""

    instance_id: UUID
    agent_token: str
    usage_url: str
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class AgentToken:
    """The secret an agent VPS presents (usage reports) and is presented (chat); only ``digest`` is stored."""

    token: str
    digest: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One LLM call reported by an agent; ``request_id`` makes a report idempotent per instance."""

    instance_id: UUID
    request_id: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class UsageCount:
    """LLM calls of one instance inside a window."""

    count: int
    providers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One Server-Sent Event of a chat turn, as the agent sent it."""

    event: str
    data: str
    id: str | None = None
