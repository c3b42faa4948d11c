"""In-memory fakes of every port. They import only the domain (enforced by import-linter).

The database fakes share one ``InMemoryDatabase``, so what ``FakeProvisionLedger`` records, ``FakeInstanceReader``
sees. Writes are visible at once: the fakes model what a committed unit of work leaves, and ``FakeUnitOfWork``
counts commits and rollbacks for tests that care.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from smoke.domain.catalog import SEEDED_MANIFESTS, SEEDED_REGIONS, SEEDED_TIERS
from smoke.domain.errors import AgentUnavailable, CloudServerNameTaken, IdempotencyKeyReused, UnknownCatalogEntry
from smoke.domain.models import (
    AgentToken,
    ChatEvent,
    CloudServer,
    Instance,
    InstanceStatus,
    InstanceView,
    LedgerEntry,
    Placement,
    PollResult,
    ServerSpec,
    StatusChange,
    UsageCount,
    UsageEvent,
    cleanup_task_id,
    provision_task_id,
)
from smoke.domain.ports import (
    AgentClient,
    AgentCredentialStore,
    Catalog,
    ChatStream,
    Clock,
    CloudProvider,
    InstanceReader,
    InstanceRepository,
    JobQueue,
    ProvisionLedger,
    ReadinessProbe,
    TokenIssuer,
    UnitOfWork,
    UsageEventStore,
)

__all__ = (
    "FakeAgentClient",
    "FakeAgentCredentialStore",
    "FakeCatalog",
    "FakeChatStream",
    "FakeClock",
    "FakeCloudProvider",
    "FakeInstanceReader",
    "FakeInstanceRepository",
    "FakeJobQueue",
    "FakeProvisionLedger",
    "FakeReadinessProbe",
    "FakeTokenIssuer",
    "FakeUnitOfWork",
    "FakeUsageEventStore",
    "InMemoryDatabase",
)


class FakeClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class InMemoryDatabase:
    """The state behind the database fakes; assert on it directly."""

    clock: FakeClock = field(default_factory=FakeClock)
    ledger: dict[tuple[UUID, str], LedgerEntry] = field(default_factory=dict)
    instances: dict[UUID, Instance] = field(default_factory=dict)
    history: list[StatusChange] = field(default_factory=list)
    credentials: dict[UUID, str] = field(default_factory=dict)
    usage: list[tuple[datetime, UsageEvent]] = field(default_factory=list)

    def live(self, instance_id: UUID) -> bool:
        instance = self.instances.get(instance_id)
        return instance is None or not (instance.is_deleted or instance.status is InstanceStatus.FAILED)


class FakeUnitOfWork(UnitOfWork):
    def __init__(self) -> None:
        self.commits = 0
        self.rollbacks = 0

    async def commit(self) -> None:
        self.commits += 1

    async def rollback(self) -> None:
        self.rollbacks += 1


class FakeProvisionLedger(ProvisionLedger):
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.locks_taken = 0

    async def get(self, customer_id: UUID, idempotency_key: str) -> LedgerEntry | None:
        return self.db.ledger.get((customer_id, idempotency_key))

    async def get_by_instance(self, customer_id: UUID, instance_id: UUID) -> LedgerEntry | None:
        return next(
            (e for e in self.db.ledger.values() if e.customer_id == customer_id and e.instance_id == instance_id),
            None,
        )

    async def lock(self, customer_id: UUID) -> None:
        self.locks_taken += 1

    async def count_live(self, customer_id: UUID) -> int:
        return sum(1 for e in self.db.ledger.values() if e.customer_id == customer_id and self.db.live(e.instance_id))

    async def add(self, entry: LedgerEntry) -> None:
        if (entry.customer_id, entry.idempotency_key) in self.db.ledger:
            raise IdempotencyKeyReused
        self.db.ledger[entry.customer_id, entry.idempotency_key] = entry

    async def without_instance(self, created_before: datetime) -> list[LedgerEntry]:
        return [
            e
            for e in self.db.ledger.values()
            if e.created_at < created_before and e.instance_id not in self.db.instances
        ]


class FakeInstanceRepository(InstanceRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def claim(self, instance: Instance) -> Instance:
        if instance.id not in self.db.instances:
            self.db.instances[instance.id] = instance
            self._record(instance)
        return self.db.instances[instance.id]

    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        return self.db.instances.get(instance_id)

    async def save(self, instance: Instance) -> None:
        stored = self.db.instances[instance.id]
        self.db.instances[instance.id] = instance
        if stored.status is not instance.status:
            self._record(instance)

    async def history(self, instance_id: UUID) -> list[StatusChange]:
        return [change for change in self.db.history if change.instance_id == instance_id]

    async def provisioning_since(self, created_before: datetime) -> list[Instance]:
        return [
            i
            for i in self.db.instances.values()
            if i.status is InstanceStatus.PROVISIONING and not i.is_deleted and i.created_at < created_before
        ]

    async def deleting(self) -> list[Instance]:
        return [i for i in self.db.instances.values() if i.status is InstanceStatus.DELETING]

    async def expired(self, created_before: datetime) -> list[Instance]:
        return [i for i in self.db.instances.values() if not i.is_deleted and i.created_at < created_before]

    async def live_ids(self) -> set[UUID]:
        return {i.id for i in self.db.instances.values() if self.db.live(i.id)}

    def _record(self, instance: Instance) -> None:
        change = StatusChange(instance.id, instance.status, instance.failure_reason, self.db.clock.now())
        self.db.history.append(change)


class FakeAgentCredentialStore(AgentCredentialStore):
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def add(self, instance_id: UUID, digest: str) -> None:
        self.db.credentials[instance_id] = digest

    async def revoke(self, instance_id: UUID) -> None:
        self.db.credentials.pop(instance_id, None)

    async def instance_for(self, digest: str) -> UUID | None:
        return next((i for i, d in self.db.credentials.items() if d == digest), None)


class FakeInstanceReader(InstanceReader):
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def view(self, customer_id: UUID, instance_id: UUID) -> InstanceView | None:
        instance = self.db.instances.get(instance_id)
        return instance.view() if instance is not None and instance.customer_id == customer_id else None

    async def poll(self, customer_id: UUID, idempotency_key: str) -> PollResult:
        entry = self.db.ledger.get((customer_id, idempotency_key))
        instance = self.db.instances.get(entry.instance_id) if entry else None
        return PollResult(True, instance.id, instance.status) if instance else PollResult(False)

    async def instance(self, customer_id: UUID, instance_id: UUID) -> Instance | None:
        instance = self.db.instances.get(instance_id)
        return instance if instance is not None and instance.customer_id == customer_id else None

    async def owns(self, customer_id: UUID, instance_id: UUID) -> bool:
        return any(e.customer_id == customer_id and e.instance_id == instance_id for e in self.db.ledger.values())


class FakeUsageEventStore(UsageEventStore):
    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def record(self, event: UsageEvent) -> bool:
        if any(e.instance_id == event.instance_id and e.request_id == event.request_id for _, e in self.db.usage):
            return False
        self.db.usage.append((self.db.clock.now(), event))
        return True

    async def count_window(self, instance_id: UUID, window_seconds: int) -> UsageCount:
        now = self.db.clock.now()
        start = now - timedelta(seconds=window_seconds)
        events = [e for at, e in self.db.usage if e.instance_id == instance_id and start <= at <= now]
        return UsageCount(len(events), tuple(sorted({e.provider for e in events})))


class FakeCatalog(Catalog):
    """The seeded catalog, or the one given."""

    def __init__(
        self,
        manifests: Mapping[str, str] = SEEDED_MANIFESTS,
        regions: Mapping[str, str] = SEEDED_REGIONS,
        tiers: Mapping[str, str] = SEEDED_TIERS,
    ) -> None:
        self.manifests, self.regions, self.tiers = dict(manifests), dict(regions), dict(tiers)

    async def resolve(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        for name, table, value in (
            ("manifest_id", self.manifests, manifest_id),
            ("region_id", self.regions, region_id),
            ("tier_id", self.tiers, tier_id),
        ):
            if value not in table:
                raise UnknownCatalogEntry(name, value)
        return Placement(
            manifest_id, region_id, tier_id, self.manifests[manifest_id], self.regions[region_id], self.tiers[tier_id]
        )


class FakeJobQueue(JobQueue):
    """Records jobs by task id; a task id that is still pending is not queued twice."""

    def __init__(self) -> None:
        self.pending: dict[str, UUID] = {}
        self.enqueued: list[str] = []

    async def enqueue_provision(self, instance_id: UUID) -> str:
        return self._enqueue(provision_task_id(instance_id), instance_id)

    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        return self._enqueue(cleanup_task_id(instance_id), instance_id)

    def finish(self, task_id: str) -> None:
        """Mark the job done, as a worker would: the same task id may be queued again."""
        del self.pending[task_id]

    def _enqueue(self, task_id: str, instance_id: UUID) -> str:
        if task_id not in self.pending:
            self.pending[task_id] = instance_id
            self.enqueued.append(task_id)
        return task_id


class FakeCloudProvider(CloudProvider):
    """Servers in memory. A new server is ``running`` after ``polls_until_running`` reads of it."""

    def __init__(self, *, polls_until_running: int = 0) -> None:
        self.servers: dict[int, CloudServer] = {}
        self.specs: dict[int, ServerSpec] = {}
        self.deleted: list[int] = []
        self.polls_until_running = polls_until_running
        self._polls: dict[int, int] = {}
        self._next_id = 1

    async def create_server(self, spec: ServerSpec) -> CloudServer:
        if any(s.name == spec.name for s in self.servers.values()):
            raise CloudServerNameTaken("uniqueness_error", "server name is already used")
        server_id, self._next_id = self._next_id, self._next_id + 1
        status = "running" if self.polls_until_running == 0 else "initializing"
        ipv4 = f"203.0.113.{server_id % 250 + 1}"
        self.servers[server_id] = CloudServer(server_id, spec.name, status, dict(spec.labels), ipv4)
        self.specs[server_id] = spec
        return self.servers[server_id]

    async def get_server(self, server_id: int) -> CloudServer | None:
        server = self.servers.get(server_id)
        if server is None:
            return None
        self._polls[server_id] = polls = self._polls.get(server_id, 0) + 1
        if polls >= self.polls_until_running and not server.is_running:
            server = self.servers[server_id] = dataclasses.replace(server, status="running")
        return server

    async def find_servers(self, labels: Mapping[str, str]) -> list[CloudServer]:
        return [s for s in self.servers.values() if labels.items() <= s.labels.items()]

    async def find_server_by_name(self, name: str) -> CloudServer | None:
        return next((s for s in self.servers.values() if s.name == name), None)

    async def delete_server(self, server_id: int) -> bool:
        if self.servers.pop(server_id, None) is None:
            return False
        self.deleted.append(server_id)
        return True


class FakeChatStream(ChatStream):
    """Replays ``events``; records whether it was closed."""

    def __init__(self, events: Iterable[ChatEvent]) -> None:
        self.events = list(events)
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        for event in self.events:
            if self.closed:
                return
            yield event

    async def aclose(self) -> None:
        self.closed = True


class FakeAgentClient(AgentClient):
    """Every agent answers, except those whose base URL is in ``down``; a chat turn replays ``reply``."""

    def __init__(self, reply: Iterable[ChatEvent] = ()) -> None:
        self.down: set[str] = set()
        self.reply = list(reply)
        self.turns: list[tuple[str, str, str]] = []
        self.streams: list[FakeChatStream] = []
        self.health_checks: list[str] = []

    async def is_healthy(self, base_url: str) -> bool:
        self.health_checks.append(base_url)
        return base_url not in self.down

    async def open_chat(self, base_url: str, token: str, message: str) -> FakeChatStream:
        if base_url in self.down:
            raise AgentUnavailable(f"agent at {base_url} is not reachable")
        self.turns.append((base_url, token, message))
        self.streams.append(FakeChatStream(self.reply))
        return self.streams[-1]


class FakeTokenIssuer(TokenIssuer):
    def agent_token(self, instance_id: UUID) -> AgentToken:
        token = f"agent-token-{instance_id.hex}"
        return AgentToken(token, self.digest(token))

    def digest(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class FakeReadinessProbe(ReadinessProbe):
    def __init__(self) -> None:
        self.down: list[str] = []

    async def unready(self) -> list[str]:
        return list(self.down)
