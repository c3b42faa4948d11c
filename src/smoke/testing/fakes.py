"""In-memory fakes of every port. They import only the domain (enforced by import-linter).

The database fakes share one ``InMemoryDatabase`` and behave like the PostgreSQL adapters: a unit of work
(``FakeDatabase.begin()``) stages its writes, ``commit`` applies them, leaving without a commit discards them;
readers see committed state only; the ledger's lock and row locks are held until the unit of work ends. A unit of
work held across a wait is refused: ``FakeClock.sleep`` and every call to ``FakeCloudProvider`` or
``FakeAgentClient`` raise ``TransactionHeldAcrossWait`` while the calling task has one open. So a missing commit or
a transaction left open across a sleep fails a unit test, as it would fail in production.

The other fakes fail on demand: ``FakeCloudProvider.fail_next``, ``FakeJobQueue.fail_next``,
``FakeAgentClient.down`` and ``FakeAgentClient.break_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from smoke.domain.budget import BucketLevel, RequestKind, Spend
from smoke.domain.catalog import SEEDED_CATALOG, CatalogSpec
from smoke.domain.errors import (
    AgentStreamBroken,
    AgentUnavailable,
    CloudError,
    CloudServerNameTaken,
    CloudTransientError,
    IdempotencyKeyReused,
    InstanceNotFound,
    SmokeError,
    UnknownCatalogEntry,
)
from smoke.domain.models import (
    AgentBoot,
    AgentToken,
    ChatEvent,
    CloudFirewall,
    CloudServer,
    CustomerScope,
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
    Database,
    InstanceReader,
    InstanceRepository,
    JobQueue,
    ProvisionLedger,
    ReadinessProbe,
    RequestBudget,
    TokenIssuer,
    UnitOfWork,
    UsageEventStore,
    UserDataRenderer,
)

__all__ = (
    "FakeAgentClient",
    "FakeCatalog",
    "FakeChatStream",
    "FakeClock",
    "FakeCloudProvider",
    "FakeDatabase",
    "FakeInstanceReader",
    "FakeJobQueue",
    "FakeReadinessProbe",
    "FakeRequestBudget",
    "FakeTokenIssuer",
    "FakeUnitOfWork",
    "FakeUsageEventStore",
    "FakeUserDataRenderer",
    "InMemoryDatabase",
    "TransactionHeldAcrossWait",
)


class TransactionHeldAcrossWait(AssertionError):
    """A unit of work was open in the task that started to wait (a sleep, a call to the cloud or an agent)."""


class FakeClock(Clock):
    """A clock that moves only when told to (or when slept on)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self.before_waiting: list[Callable[[str], None]] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        for check in self.before_waiting:
            check("sleep")
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class InMemoryDatabase:
    """The committed state behind the database fakes, for every customer; assert on it directly.

    Tests may also plant rows here (another customer's, or a state hard to reach) before the code under test runs.
    """

    clock: FakeClock = field(default_factory=FakeClock)
    ledger: dict[UUID, LedgerEntry] = field(default_factory=dict)
    """By instance id."""
    owners: dict[UUID, UUID] = field(default_factory=dict)
    """Instance id → the customer whose ledger entry allocated it."""
    instances: dict[UUID, Instance] = field(default_factory=dict)
    history: list[StatusChange] = field(default_factory=list)
    credentials: dict[UUID, str] = field(default_factory=dict)
    usage: list[tuple[datetime, UsageEvent]] = field(default_factory=list)
    commits: int = 0
    _open: dict[asyncio.Task[object] | None, int] = field(default_factory=lambda: defaultdict(int))
    _customer_locks: dict[UUID, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    _row_locks: dict[UUID, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def __post_init__(self) -> None:
        self.clock.before_waiting.append(self.refuse_open_transaction)

    def entry(self, customer_id: UUID, idempotency_key: str) -> LedgerEntry | None:
        """The committed ledger entry of that customer's key."""
        return next(
            (
                e
                for i, e in self.ledger.items()
                if self.owners[i] == customer_id and e.idempotency_key == idempotency_key
            ),
            None,
        )

    def plant(self, scope: CustomerScope, entry: LedgerEntry, instance: Instance | None = None) -> None:
        """Store an accepted request of ``scope`` (and its instance row) as committed, bypassing every service."""
        self.ledger[entry.instance_id] = entry
        self.owners[entry.instance_id] = scope.customer_id
        if instance is not None:
            self.instances[instance.id] = instance

    def refuse_open_transaction(self, what: str) -> None:
        if self._open.get(_current_task(), 0):
            raise TransactionHeldAcrossWait(f"{what} while a unit of work is open: end it before waiting")

    def is_live(self, instance_id: UUID) -> bool:
        instance = self.instances.get(instance_id)
        return instance is None or not (instance.is_deleted or instance.status is InstanceStatus.FAILED)


async def _round_trip() -> None:
    """Let other tasks run, as a statement's round trip to the database does: concurrency shows in unit tests."""
    await asyncio.sleep(0)


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class _Staged:
    """One unit of work's view: the committed state with its own writes on top, applied only by ``commit``."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.ledger: dict[UUID, LedgerEntry] = {}
        self.instances: dict[UUID, Instance] = {}
        self.history: list[StatusChange] = []
        self.credentials: dict[UUID, str | None] = {}

    def entries(self) -> dict[UUID, LedgerEntry]:
        return {**self.db.ledger, **self.ledger}

    def all_instances(self) -> dict[UUID, Instance]:
        return {**self.db.instances, **self.instances}

    def credential(self, instance_id: UUID) -> str | None:
        if instance_id in self.credentials:
            return self.credentials[instance_id]
        return self.db.credentials.get(instance_id)

    def apply(self, customer_id: UUID) -> None:
        self.db.ledger.update(self.ledger)
        self.db.owners.update(dict.fromkeys(self.ledger, customer_id))
        self.db.instances.update(self.instances)
        self.db.history.extend(self.history)
        for instance_id, digest in self.credentials.items():
            if digest is None:
                self.db.credentials.pop(instance_id, None)
            else:
                self.db.credentials[instance_id] = digest
        self.db.commits += 1


class _FakeLedger(ProvisionLedger):
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def _ours(self) -> list[LedgerEntry]:
        return [e for i, e in self._uow.staged.entries().items() if self._uow.owns(i)]

    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        await _round_trip()
        return next((e for e in self._ours() if e.idempotency_key == idempotency_key), None)

    async def get_by_instance(self, instance_id: UUID) -> LedgerEntry | None:
        await _round_trip()
        return next((e for e in self._ours() if e.instance_id == instance_id), None)

    async def lock(self) -> None:
        await _round_trip()
        await self._uow.hold(self._uow.db._customer_locks[self._uow.scope.customer_id])

    async def count_live(self) -> int:
        await _round_trip()
        instances = self._uow.staged.all_instances()
        return sum(
            1
            for e in self._ours()
            if (i := instances.get(e.instance_id)) is None or not (i.is_deleted or i.status is InstanceStatus.FAILED)
        )

    async def add(self, entry: LedgerEntry) -> None:
        await _round_trip()
        if await self.get(entry.idempotency_key) is not None or entry.instance_id in self._uow.staged.entries():
            raise IdempotencyKeyReused
        self._uow.staged.ledger[entry.instance_id] = entry

    async def without_instance(self, created_before: datetime) -> list[LedgerEntry]:
        await _round_trip()
        instances = self._uow.staged.all_instances()
        return [e for e in self._ours() if e.created_at < created_before and e.instance_id not in instances]


class _FakeInstances(InstanceRepository):
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def _ours(self) -> list[Instance]:
        customer = self._uow.scope.customer_id
        return [i for i in self._uow.staged.all_instances().values() if i.customer_id == customer]

    async def claim(self, instance: Instance) -> Instance:
        await _round_trip()
        await self._lock(instance.id)
        stored = self._uow.staged.all_instances().get(instance.id)
        if stored is None:
            if instance.customer_id != self._uow.scope.customer_id:
                raise InstanceNotFound
            self._uow.staged.instances[instance.id] = stored = instance
            self._record(instance)
        elif stored.customer_id != self._uow.scope.customer_id:
            raise InstanceNotFound
        return stored

    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        await _round_trip()
        if lock:
            await self._lock(instance_id)
        return next((i for i in self._ours() if i.id == instance_id), None)

    async def save(self, instance: Instance) -> None:
        await _round_trip()
        stored = await self.get(instance.id)
        if stored is None:
            raise InstanceNotFound
        if self._uow.db._row_locks[instance.id] not in self._uow.held:
            raise AssertionError(f"save of instance {instance.id} without its row lock: a concurrent change is lost")
        self._uow.staged.instances[instance.id] = instance
        if stored.status is not instance.status:
            self._record(instance)

    async def note(self, instance: Instance, reason: str) -> None:
        await _round_trip()
        if await self.get(instance.id) is None:
            raise InstanceNotFound
        if self._uow.db._row_locks[instance.id] not in self._uow.held:
            raise AssertionError(f"note on instance {instance.id} without its row lock: it may interleave a change")
        history = [c for c in [*self._uow.db.history, *self._uow.staged.history] if c.instance_id == instance.id]
        if not history or (history[-1].status, history[-1].reason) != (instance.status, reason):
            change = StatusChange(instance.id, instance.status, reason, self._uow.db.clock.now())
            self._uow.staged.history.append(change)

    async def provisioning_since(self, created_before: datetime) -> list[Instance]:
        await _round_trip()
        return [
            i
            for i in self._ours()
            if i.status is InstanceStatus.PROVISIONING and not i.is_deleted and i.created_at < created_before
        ]

    async def deleting(self) -> list[Instance]:
        await _round_trip()
        return [i for i in self._ours() if i.status is InstanceStatus.DELETING]

    async def expired(self, created_before: datetime) -> list[Instance]:
        await _round_trip()
        return [i for i in self._ours() if not i.is_deleted and i.created_at < created_before]

    async def expecting_server(self) -> list[Instance]:
        await _round_trip()
        expecting = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)
        return [i for i in self._ours() if i.status in expecting and not i.is_deleted]

    async def live_ids(self) -> set[UUID]:
        await _round_trip()
        return {i.id for i in self._ours() if not (i.is_deleted or i.status is InstanceStatus.FAILED)}

    async def _lock(self, instance_id: UUID) -> None:
        await self._uow.hold(self._uow.db._row_locks[instance_id])

    def _record(self, instance: Instance) -> None:
        change = StatusChange(instance.id, instance.status, instance.failure_reason, self._uow.db.clock.now())
        self._uow.staged.history.append(change)


class _FakeCredentials(AgentCredentialStore):
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, instance_id: UUID, digest: str) -> None:
        await _round_trip()
        if self._uow.owns(instance_id):
            self._uow.staged.credentials[instance_id] = digest

    async def revoke(self, instance_id: UUID) -> None:
        await _round_trip()
        if self._uow.owns(instance_id):
            self._uow.staged.credentials[instance_id] = None

    async def instance_for(self, digest: str) -> UUID | None:
        await _round_trip()
        staged = self._uow.staged
        candidates = {*staged.db.credentials, *staged.credentials}
        return next(
            (i for i in candidates if staged.credential(i) == digest and self._uow.owns(i)),
            None,
        )


class FakeUnitOfWork(UnitOfWork):
    """One unit of work of ``FakeDatabase``: staged writes, locks held until it ends."""

    def __init__(self, db: InMemoryDatabase, scope: CustomerScope) -> None:
        self.db = db
        self.scope = scope
        self.staged = _Staged(db)
        self.committed = False
        self.held: list[asyncio.Lock] = []
        self.ledger = _FakeLedger(self)
        self.instances = _FakeInstances(self)
        self.credentials = _FakeCredentials(self)

    async def commit(self) -> None:
        self.staged.apply(self.scope.customer_id)
        self.staged = _Staged(self.db)
        self.committed = True

    def owns(self, instance_id: UUID) -> bool:
        return self.db.owners.get(instance_id) == self.scope.customer_id or instance_id in self.staged.ledger

    async def hold(self, lock: asyncio.Lock) -> None:
        if lock not in self.held:
            await lock.acquire()
            self.held.append(lock)

    def release(self) -> None:
        for lock in self.held:
            lock.release()
        self.held.clear()


class FakeDatabase(Database):
    """Units of work on an ``InMemoryDatabase``, for the customer of ``scope``."""

    def __init__(self, db: InMemoryDatabase, scope: CustomerScope) -> None:
        self.db = db
        self.scope = scope

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeUnitOfWork]:
        uow = FakeUnitOfWork(self.db, self.scope)
        task = _current_task()
        self.db._open[task] += 1
        try:
            yield uow
        finally:
            self.db._open[task] -= 1
            uow.release()


class FakeInstanceReader(InstanceReader):
    """Committed state of the customer of ``scope`` only."""

    def __init__(self, db: InMemoryDatabase, scope: CustomerScope) -> None:
        self.db = db
        self.scope = scope

    def _entry(self, instance_id: UUID) -> LedgerEntry | None:
        ours = self.db.owners.get(instance_id) == self.scope.customer_id
        return self.db.ledger.get(instance_id) if ours else None

    def _instance(self, instance_id: UUID) -> Instance | None:
        instance = self.db.instances.get(instance_id)
        return instance if instance is not None and instance.customer_id == self.scope.customer_id else None

    async def view(self, instance_id: UUID) -> InstanceView | None:
        if (instance := self._instance(instance_id)) is not None:
            return instance.view()
        return Instance.queued_view(instance_id) if self._entry(instance_id) else None

    async def poll(self, idempotency_key: str) -> PollResult:
        entry = self.db.entry(self.scope.customer_id, idempotency_key)
        instance = self._instance(entry.instance_id) if entry else None
        return PollResult(True, instance.id, instance.status) if instance else PollResult(False)

    async def instance(self, instance_id: UUID) -> Instance | None:
        return self._instance(instance_id)

    async def owns(self, instance_id: UUID) -> bool:
        return self._entry(instance_id) is not None

    async def events(self, instance_id: UUID) -> list[StatusChange] | None:
        if (entry := self._entry(instance_id)) is None:
            return None
        accepted = StatusChange(instance_id, InstanceStatus.QUEUED, None, entry.created_at)
        return [accepted, *(c for c in self.db.history if c.instance_id == instance_id)]

    async def page(self, *, status: InstanceStatus | None, limit: int, before: PageCursor | None) -> InstancePage:
        summaries = sorted(
            (self._summary(entry) for i, entry in self.db.ledger.items() if self._entry(i) is not None),
            key=lambda s: (s.created_at, s.id),
            reverse=True,
        )
        if status is not None:
            summaries = [s for s in summaries if s.status is status]
        if before is not None:
            summaries = [s for s in summaries if (s.created_at, s.id) < (before.created_at, before.instance_id)]
        page = summaries[:limit]
        more = len(summaries) > limit
        return InstancePage(page, PageCursor(page[-1].created_at, page[-1].id) if more else None)

    async def recent(self, *, since: datetime, limit: int) -> list[InstanceSummary]:
        page = await self.page(status=None, limit=len(self.db.ledger) + 1, before=None)
        return [s for s in page.instances if s.created_at >= since][:limit]

    async def timelines(self, instance_ids: Collection[UUID]) -> dict[UUID, list[StatusChange]]:
        return {i: events for i in instance_ids if (events := await self.events(i)) is not None}

    def _summary(self, entry: LedgerEntry) -> InstanceSummary:
        instance = self._instance(entry.instance_id)
        view = instance.view() if instance else Instance.queued_view(entry.instance_id)
        running_at = next(
            (
                c.created_at
                for c in self.db.history
                if c.instance_id == entry.instance_id and c.status is InstanceStatus.RUNNING
            ),
            None,
        )
        return InstanceSummary(
            id=entry.instance_id,
            hostname=view.hostname,
            status=view.status,
            manifest_id=entry.manifest_id,
            region_id=entry.region_id,
            tier_id=entry.tier_id,
            created_at=entry.created_at,
            running_at=running_at,
            deleted_at=instance.deleted_at if instance else None,
            reason=instance.failure_reason if instance else None,
        )


class FakeUsageEventStore(UsageEventStore):
    """Usage events in the ``InMemoryDatabase``, on its clock; recorded at once (as the real store commits each)."""

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
    """The seeded catalog, or the one given; ``retired`` ids are refused like unknown ones."""

    def __init__(self, spec: CatalogSpec = SEEDED_CATALOG) -> None:
        self.spec = spec
        self.retired: set[str] = set()

    async def resolve(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        for name, table, value in (
            ("manifest_id", self.spec.manifests, manifest_id),
            ("region_id", self.spec.regions, region_id),
            ("tier_id", self.spec.tiers, tier_id),
        ):
            if value not in table or value in self.retired:
                raise UnknownCatalogEntry(name, value)
        return self.spec.placement(manifest_id, region_id, tier_id)


class FakeUserDataRenderer(UserDataRenderer):
    """The agent's configuration as JSON after ``#cloud-config``, with the manifest id: enough to assert on."""

    def render(self, boot: AgentBoot) -> str:
        config = {
            "instance_id": str(boot.instance_id),
            "agent_token": boot.agent_token,
            "usage_url": boot.usage_url,
            "manifest_id": boot.manifest.id,
            "agent": str(boot.manifest.agent),
        }
        files = [{"path": "/etc/smoke-agent/config.json", "permissions": "0600", "content": json.dumps(config)}]
        return "#cloud-config\n" + json.dumps({"write_files": files})


class FakeJobQueue(JobQueue):
    """Records jobs by task id; a task id that is still pending is not queued twice.

    ``fail_next(error)`` makes the next enqueue raise ``error`` (e.g. ``StorageUnavailable``) and queue nothing.
    """

    def __init__(self) -> None:
        self.pending: dict[str, UUID] = {}
        self.enqueued: list[str] = []
        self._failures: deque[SmokeError] = deque()

    async def enqueue_provision(self, instance_id: UUID) -> str:
        return self._enqueue(provision_task_id(instance_id), instance_id)

    async def enqueue_cleanup(self, instance_id: UUID) -> str:
        return self._enqueue(cleanup_task_id(instance_id), instance_id)

    def fail_next(self, error: SmokeError, times: int = 1) -> None:
        self._failures.extend([error] * times)

    def finish(self, task_id: str) -> None:
        """Mark the job done, as a worker would: the same task id may be queued again."""
        del self.pending[task_id]

    def _enqueue(self, task_id: str, instance_id: UUID) -> str:
        if self._failures:
            raise self._failures.popleft()
        if task_id not in self.pending:
            self.pending[task_id] = instance_id
            self.enqueued.append(task_id)
        return task_id


class FakeCloudProvider(CloudProvider):
    """Servers in memory. A new server is ``running`` after ``polls_until_running`` reads of it.

    A listing is a read of every server it reports.

    ``fail_next(method, error)`` makes the next call of that method raise ``error``; ``lose_next_create_answer()``
    makes the next create succeed at the provider and raise ``CloudTransientError`` at the caller, as a create
    whose answer was lost does. Every call refuses to run inside a unit of work (see the module docstring).
    """

    def __init__(self, *, polls_until_running: int = 0) -> None:
        locations = frozenset(SEEDED_CATALOG.regions.values())
        self.locations: set[str] = set(locations)
        self.server_types: dict[str, ServerTypeOffer] = {
            name: ServerTypeOffer(name, "x86", locations) for name in SEEDED_CATALOG.tiers.values()
        }
        self.images: set[tuple[str, str]] = {("ubuntu-24.04", "x86"), ("ubuntu-24.04", "arm")}
        self.ssh_keys: set[str] = set()
        self.firewalls: dict[int, CloudFirewall] = {}
        self.servers: dict[int, CloudServer] = {}
        self.specs: dict[int, ServerSpec] = {}
        self.deleted: list[int] = []
        self.calls: list[str] = []
        self.polls_until_running = polls_until_running
        self.before_waiting: list[Callable[[str], None]] = []
        self._failures: dict[str, deque[SmokeError]] = defaultdict(deque)
        self._lose_create_answers = 0
        self._polls: dict[int, int] = {}
        self._next_id = 1

    def fail_next(self, method: str, error: SmokeError, times: int = 1) -> None:
        if not callable(getattr(self, method, None)):
            raise ValueError(f"FakeCloudProvider has no method {method}")
        self._failures[method].extend([error] * times)

    def lose_next_create_answer(self) -> None:
        self._lose_create_answers += 1

    def add_server(self, spec: ServerSpec, status: str = "running") -> CloudServer:
        """A server that exists at the provider, created by someone else or by an earlier attempt."""
        server_id, self._next_id = self._next_id, self._next_id + 1
        ipv4 = f"203.0.113.{server_id % 250 + 1}"
        self.servers[server_id] = CloudServer(server_id, spec.name, status, dict(spec.labels), ipv4)
        self.specs[server_id] = spec
        return self.servers[server_id]

    async def create_server(self, spec: ServerSpec) -> CloudServer:
        self._called("create_server")
        for firewall_id in spec.firewall_ids:
            if firewall_id not in self.firewalls:
                raise CloudError("invalid_input", f"firewall with ID '{firewall_id}' not found")
        for key in spec.ssh_keys:
            if key not in self.ssh_keys:
                raise CloudError("invalid_input", f"SSH key '{key}' not found")
        if any(s.name == spec.name for s in self.servers.values()):
            raise CloudServerNameTaken("uniqueness_error", "server name is already used")
        server = self.add_server(spec, "running" if self.polls_until_running == 0 else "initializing")
        if self._lose_create_answers:
            self._lose_create_answers -= 1
            raise CloudTransientError("network_error", "the connection closed before the answer")
        return server

    async def get_server(self, server_id: int) -> CloudServer | None:
        self._called("get_server")
        return self._read(server_id)

    async def find_servers(self, labels: Mapping[str, str]) -> list[CloudServer]:
        """Every server carrying ``labels``; a listing is a read of each server it reports."""
        self._called("find_servers")
        listed = [s.id for s in self.servers.values() if labels.items() <= s.labels.items()]
        return [server for server_id in listed if (server := self._read(server_id)) is not None]

    async def find_server_by_name(self, name: str) -> CloudServer | None:
        self._called("find_server_by_name")
        return next((s for s in self.servers.values() if s.name == name), None)

    async def delete_server(self, server_id: int) -> bool:
        self._called("delete_server")
        if self.servers.pop(server_id, None) is None:
            return False
        self.deleted.append(server_id)
        return True

    async def server_type(self, name: str) -> ServerTypeOffer | None:
        self._called("server_type")
        return self.server_types.get(name)

    async def location_exists(self, name: str) -> bool:
        self._called("location_exists")
        return name in self.locations

    async def image_exists(self, image: str, architecture: str) -> bool:
        self._called("image_exists")
        return (image, architecture) in self.images

    async def ssh_key_exists(self, name_or_id: str) -> bool:
        self._called("ssh_key_exists")
        return name_or_id in self.ssh_keys

    async def find_firewalls(self, labels: Mapping[str, str]) -> list[CloudFirewall]:
        self._called("find_firewalls")
        return [f for f in self.firewalls.values() if labels.items() <= f.labels.items()]

    async def create_firewall(
        self, name: str, labels: Mapping[str, str], rules: tuple[FirewallRule, ...]
    ) -> CloudFirewall:
        self._called("create_firewall")
        if any(f.name == name for f in self.firewalls.values()):
            raise CloudServerNameTaken("uniqueness_error", "firewall name is already used")
        firewall_id = max(self.firewalls, default=0) + 1
        self.firewalls[firewall_id] = CloudFirewall(firewall_id, name, dict(labels), rules)
        return self.firewalls[firewall_id]

    async def set_firewall_rules(self, firewall_id: int, rules: tuple[FirewallRule, ...]) -> None:
        self._called("set_firewall_rules")
        self.firewalls[firewall_id] = dataclasses.replace(self.firewalls[firewall_id], rules=rules)

    def _read(self, server_id: int) -> CloudServer | None:
        """The server as a read reports it: ``running`` from its ``polls_until_running``-th read on."""
        server = self.servers.get(server_id)
        if server is None:
            return None
        self._polls[server_id] = polls = self._polls.get(server_id, 0) + 1
        if polls >= self.polls_until_running and server.status == "initializing":
            server = self.servers[server_id] = dataclasses.replace(server, status="running")
        return server

    def _called(self, method: str) -> None:
        for check in self.before_waiting:
            check(f"a cloud call ({method})")
        self.calls.append(method)
        if self._failures[method]:
            raise self._failures[method].popleft()


class FakeChatStream(ChatStream):
    """Replays ``events``; raises ``AgentStreamBroken`` after ``break_after`` events if set; records closing."""

    def __init__(self, events: Iterable[ChatEvent], break_after: int | None = None) -> None:
        self.events = list(events)
        self.break_after = break_after
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        for n, event in enumerate(self.events):
            if self.closed:
                return
            if n == self.break_after:
                raise AgentStreamBroken("the agent's connection was lost")
            yield event
        if self.break_after is not None and self.break_after >= len(self.events):
            raise AgentStreamBroken("the agent's connection was lost")

    async def aclose(self) -> None:
        self.closed = True


class FakeAgentClient(AgentClient):
    """Every agent answers, except those whose base URL is in ``down``; a chat turn replays ``reply``.

    With ``break_after`` set, the next turns' streams break after that many events.
    """

    def __init__(self, reply: Iterable[ChatEvent] = ()) -> None:
        self.down: set[str] = set()
        self.reply = list(reply)
        self.break_after: int | None = None
        self.turns: list[tuple[str, str, str]] = []
        self.streams: list[FakeChatStream] = []
        self.health_checks: list[str] = []
        self.before_waiting: list[Callable[[str], None]] = []

    async def is_healthy(self, base_url: str) -> bool:
        self._waiting("an agent health check")
        self.health_checks.append(base_url)
        return base_url not in self.down

    async def open_chat(self, base_url: str, token: str, message: str) -> FakeChatStream:
        self._waiting("an agent chat turn")
        if base_url in self.down:
            raise AgentUnavailable(f"agent at {base_url} is not reachable")
        self.turns.append((base_url, token, message))
        self.streams.append(FakeChatStream(self.reply, self.break_after))
        return self.streams[-1]

    def _waiting(self, what: str) -> None:
        for check in self.before_waiting:
            check(what)


class FakeTokenIssuer(TokenIssuer):
    """Readable tokens (``agent-token-<instance hex>``) and SHA-256 digests."""

    def agent_token(self, instance_id: UUID) -> AgentToken:
        token = f"agent-token-{instance_id.hex}"
        return AgentToken(token, self.digest(token))

    def digest(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class FakeReadinessProbe(ReadinessProbe):
    """Ready unless a test names what is ``down`` (``database``, ``queue``)."""

    def __init__(self) -> None:
        self.down: list[str] = []

    async def unready(self) -> list[str]:
        return list(self.down)


class FakeRequestBudget(RequestBudget):
    """A project's request bucket in memory, on ``clock`` (UNIX seconds); ``level`` is the estimate to assert on.

    ``spends`` counts the requests granted, by kind.
    """

    def __init__(self, clock: Callable[[], float] = time.time, level: BucketLevel | None = None) -> None:
        self._clock = clock
        self.level = level or BucketLevel.full(clock())
        self.spends: dict[RequestKind, int] = dict.fromkeys(RequestKind, 0)

    async def spend(self, kind: RequestKind) -> Spend:
        self.level, spend = self.level.spend(kind, self._clock())
        self.spends[kind] += spend.granted
        return spend

    async def correct(self, ticket: int, capacity: int, remaining: int) -> None:
        self.level = self.level.corrected(self._clock(), ticket, capacity, remaining)
