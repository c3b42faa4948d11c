"""Public test support: in-memory fakes of every port, for smoke's unit tests and for other apps' unit tests.

Never part of the default wiring. Each fake keeps state a test can assert on, and the contract suites in
``tests/contracts`` run the same tests against each fake and its real adapter, so the fakes stay honest.
"""

from smoke.testing.fakes import (
    FakeAgentClient,
    FakeAgentCredentialStore,
    FakeCatalog,
    FakeChatStream,
    FakeClock,
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
