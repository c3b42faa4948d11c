"""Unit tests: services against the public fakes of ``smoke.testing``; no network, no database."""

from __future__ import annotations

import pytest

from smoke.domain.models import ProvisionRequest
from smoke.domain.services import Cleaner, Provisioner, UsageReader
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider

SCOPE = Settings().customer_scope()


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
