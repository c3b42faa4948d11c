"""Unit tests: services against the public fakes of ``smoke.testing``; no network, no database."""

from __future__ import annotations

import pytest

from smoke.domain.models import ProvisionRequest
from smoke.domain.services import (
    BuildPolicy,
    Cleaner,
    Decommissioner,
    InstanceBuilder,
    InstanceLookup,
    Provisioner,
    UsageReader,
)
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider

SCOPE = Settings().customer_scope()
POLICY = BuildPolicy(timeout_seconds=60, agent_url_template="http://{ipv4}:8080", public_url="http://smoke.test")


@pytest.fixture
def fakes() -> FakeAdaptersProvider:
    return FakeAdaptersProvider()


@pytest.fixture
def provisioner(fakes: FakeAdaptersProvider) -> Provisioner:
    return Provisioner(
        scope=SCOPE,
        max_live_instances=3,
        ledger=fakes.ledger,
        catalog=fakes.catalog,
        reader=fakes.reader,
        queue=fakes.queue,
        uow=fakes.uow,
        clock=fakes.db.clock,
    )


@pytest.fixture
def lookup(fakes: FakeAdaptersProvider) -> InstanceLookup:
    return InstanceLookup(scope=SCOPE, reader=fakes.reader)


@pytest.fixture
def cleaner(fakes: FakeAdaptersProvider) -> Cleaner:
    return Cleaner(
        scope=SCOPE,
        ledger=fakes.ledger,
        instances=fakes.instances,
        credentials=fakes.credentials,
        queue=fakes.queue,
        uow=fakes.uow,
        clock=fakes.db.clock,
    )


@pytest.fixture
def usage_reader(fakes: FakeAdaptersProvider) -> UsageReader:
    return UsageReader(scope=SCOPE, reader=fakes.reader, usage=fakes.usage)


def a_request(key: str = "ci-run-1", **changes: str) -> ProvisionRequest:
    fields = {"manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"} | changes
    return ProvisionRequest(idempotency_key=key, **fields)


@pytest.fixture
def decommissioner(fakes: FakeAdaptersProvider) -> Decommissioner:
    return Decommissioner(instances=fakes.instances, cloud=fakes.cloud, uow=fakes.uow)


@pytest.fixture
def builder(fakes: FakeAdaptersProvider) -> InstanceBuilder:
    return InstanceBuilder(
        scope=SCOPE,
        policy=POLICY,
        ledger=fakes.ledger,
        instances=fakes.instances,
        credentials=fakes.credentials,
        catalog=fakes.catalog,
        cloud=fakes.cloud,
        agents=fakes.agents,
        tokens=fakes.tokens,
        uow=fakes.uow,
        clock=fakes.db.clock,
    )
