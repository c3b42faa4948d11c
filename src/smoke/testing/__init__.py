"""Public test support: in-memory fakes of every port, for smoke's unit tests and for other apps' unit tests.

Never part of the default wiring: ``smoke.testing.providers.FakeAdaptersProvider`` wires them with dishka. Each fake
keeps state a test can assert on, and the contract suites in ``tests/contracts`` run the same tests against each
fake and its real adapter, so the fakes stay honest.
"""

from smoke.testing.fakes import (
    FakeAgentClient,
    FakeCatalog,
    FakeChatStream,
    FakeClock,
    FakeCloudProvider,
    FakeDatabase,
    FakeInstanceReader,
    FakeJobQueue,
    FakeReadinessProbe,
    FakeRequestBudget,
    FakeTokenIssuer,
    FakeUnitOfWork,
    FakeUsageEventStore,
    FakeUserDataRenderer,
    InMemoryDatabase,
    TransactionHeldAcrossWait,
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
