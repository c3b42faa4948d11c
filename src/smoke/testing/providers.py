"""A dishka provider that wires every port to a fake: ``make_container(settings, FakeAdaptersProvider())``."""

from __future__ import annotations

from collections.abc import Callable

from dishka import Provider, Scope, provide

from smoke.domain.models import CustomerScope
from smoke.domain.ports import (
    AgentClient,
    Catalog,
    Clock,
    CloudProvider,
    Database,
    InstanceReader,
    JobQueue,
    ReadinessProbe,
    RequestBudget,
    TokenIssuer,
    UsageEventStore,
    UserDataRenderer,
)
from smoke.testing.fakes import (
    FakeAgentClient,
    FakeCatalog,
    FakeCloudProvider,
    FakeDatabase,
    FakeInstanceReader,
    FakeJobQueue,
    FakeReadinessProbe,
    FakeRequestBudget,
    FakeTokenIssuer,
    FakeUsageEventStore,
    FakeUserDataRenderer,
    InMemoryDatabase,
)

__all__ = ("FakeAdaptersProvider",)


class FakeAdaptersProvider(Provider):
    """Every port on in-memory fakes sharing one ``InMemoryDatabase``; the fakes are attributes to assert on.

    The database fakes are bound to the customer of the container's settings (``SMOKE_CUSTOMER_ID``...), like the
    real adapters. The cloud and agent fakes refuse to be called while the calling task holds a unit of work.
    """

    def __init__(self, db: InMemoryDatabase | None = None) -> None:
        super().__init__(scope=Scope.APP)
        self.db = db or InMemoryDatabase()
        self.usage = FakeUsageEventStore(self.db)
        self.catalog = FakeCatalog()
        self.queue = FakeJobQueue()
        self.cloud = FakeCloudProvider()
        self.agents = FakeAgentClient()
        self.tokens = FakeTokenIssuer()
        self.readiness = FakeReadinessProbe()
        self.user_data = FakeUserDataRenderer()
        self.budget = FakeRequestBudget(lambda: self.db.clock.now().timestamp())

    @provide(override=True)
    def provide_clock(self) -> Clock:
        return self.db.clock

    @provide(override=True)
    def provide_database(self, scope: CustomerScope) -> Database:
        return FakeDatabase(self.db, scope)

    @provide(override=True)
    def provide_reader(self, scope: CustomerScope) -> InstanceReader:
        return FakeInstanceReader(self.db, scope)

    @provide(override=True)
    def provide_usage(self) -> UsageEventStore:
        return self.usage

    @provide(override=True)
    def provide_catalog(self) -> Catalog:
        return self.catalog

    @provide(override=True)
    def provide_queue(self) -> JobQueue:
        return self.queue

    @provide(override=True)
    def provide_cloud(self) -> CloudProvider:
        self._guard(self.cloud.before_waiting)
        return self.cloud

    @provide(override=True)
    def provide_agents(self) -> AgentClient:
        self._guard(self.agents.before_waiting)
        return self.agents

    @provide(override=True)
    def provide_request_budget(self) -> RequestBudget:
        return self.budget

    @provide(override=True)
    def provide_tokens(self) -> TokenIssuer:
        return self.tokens

    @provide(override=True)
    def provide_readiness(self) -> ReadinessProbe:
        return self.readiness

    @provide(override=True)
    def provide_user_data(self) -> UserDataRenderer:
        return self.user_data

    def _guard(self, checks: list[Callable[[str], None]]) -> None:
        if self.db.refuse_open_transaction not in checks:
            checks.append(self.db.refuse_open_transaction)
