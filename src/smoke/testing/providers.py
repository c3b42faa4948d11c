"""A dishka provider that wires every port to a fake: ``make_container(settings, FakeAdaptersProvider())``."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from smoke.domain.ports import (
    AgentClient,
    AgentCredentialStore,
    Catalog,
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
from smoke.testing.fakes import (
    FakeAgentClient,
    FakeAgentCredentialStore,
    FakeCatalog,
    FakeCloudProvider,
    FakeInstanceReader,
    FakeInstanceRepository,
    FakeJobQueue,
    FakeProvisionLedger,
    FakeReadinessProbe,
    FakeTokenIssuer,
    FakeUnitOfWork,
    FakeUsageEventStore,
    InMemoryDatabase,
)

__all__ = ("FakeAdaptersProvider",)


class FakeAdaptersProvider(Provider):
    """Every port on in-memory fakes sharing one ``InMemoryDatabase``; the fakes are attributes to assert on."""

    def __init__(self, db: InMemoryDatabase | None = None) -> None:
        super().__init__(scope=Scope.APP)
        self.db = db or InMemoryDatabase()
        self.ledger = FakeProvisionLedger(self.db)
        self.instances = FakeInstanceRepository(self.db)
        self.credentials = FakeAgentCredentialStore(self.db)
        self.reader = FakeInstanceReader(self.db)
        self.usage = FakeUsageEventStore(self.db)
        self.uow = FakeUnitOfWork()
        self.catalog = FakeCatalog()
        self.queue = FakeJobQueue()
        self.cloud = FakeCloudProvider()
        self.agents = FakeAgentClient()
        self.tokens = FakeTokenIssuer()
        self.readiness = FakeReadinessProbe()

    @provide
    def provide_clock(self) -> Clock:
        return self.db.clock

    @provide
    def provide_ledger(self) -> ProvisionLedger:
        return self.ledger

    @provide
    def provide_instances(self) -> InstanceRepository:
        return self.instances

    @provide
    def provide_credentials(self) -> AgentCredentialStore:
        return self.credentials

    @provide
    def provide_reader(self) -> InstanceReader:
        return self.reader

    @provide
    def provide_usage(self) -> UsageEventStore:
        return self.usage

    @provide
    def provide_uow(self) -> UnitOfWork:
        return self.uow

    @provide
    def provide_catalog(self) -> Catalog:
        return self.catalog

    @provide
    def provide_queue(self) -> JobQueue:
        return self.queue

    @provide
    def provide_cloud(self) -> CloudProvider:
        return self.cloud

    @provide
    def provide_agents(self) -> AgentClient:
        return self.agents

    @provide
    def provide_tokens(self) -> TokenIssuer:
        return self.tokens

    @provide
    def provide_readiness(self) -> ReadinessProbe:
        return self.readiness
