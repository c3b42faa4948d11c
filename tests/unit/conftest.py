"""Unit tests: services from ``make_container(settings, FakeAdaptersProvider())``; no network, no database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from dishka import AsyncContainer

from smoke.bootstrap import make_container
from smoke.domain.models import (
    CustomerScope,
    Instance,
    InstanceStatus,
    LedgerEntry,
    ProvisionRequest,
    ServerSpec,
    provision_task_id,
)
from smoke.domain.services import (
    ChatRelay,
    Cleaner,
    Dashboard,
    Deleter,
    InstanceLookup,
    Provisioner,
    ProvisionRequests,
    Reconciler,
    UsageReader,
)
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider

SETTINGS = Settings(
    ops_bearer_token="test-ops-token",
    agent_token_secret="test-agent-secret",
    max_live_instances=3,
    provision_timeout_seconds=60,
    provision_poll_seconds=1.0,
    public_url="http://smoke.test",
)
SCOPE = SETTINGS.customer_scope()
OTHER = CustomerScope(uuid.UUID(int=0xAC), uuid.UUID(int=0xAE), uuid.UUID(int=0xAB))
"""Another customer of the platform, sharing the database: nothing smoke does may touch its rows."""


@pytest.fixture
def fakes() -> FakeAdaptersProvider:
    return FakeAdaptersProvider()


@pytest.fixture
async def container(fakes: FakeAdaptersProvider) -> AsyncIterator[AsyncContainer]:
    container = make_container(SETTINGS, fakes)
    yield container
    await container.close()


@pytest.fixture
async def requests(container: AsyncContainer) -> ProvisionRequests:
    return await container.get(ProvisionRequests)


@pytest.fixture
async def provisioner(container: AsyncContainer) -> Provisioner:
    return await container.get(Provisioner)


@pytest.fixture
async def deleter(container: AsyncContainer) -> Deleter:
    return await container.get(Deleter)


@pytest.fixture
async def cleaner(container: AsyncContainer) -> Cleaner:
    return await container.get(Cleaner)


@pytest.fixture
async def reconciler(container: AsyncContainer) -> Reconciler:
    return await container.get(Reconciler)


@pytest.fixture
async def lookup(container: AsyncContainer) -> InstanceLookup:
    return await container.get(InstanceLookup)


@pytest.fixture
async def dashboard(container: AsyncContainer) -> Dashboard:
    return await container.get(Dashboard)


@pytest.fixture
async def usage_reader(container: AsyncContainer) -> UsageReader:
    return await container.get(UsageReader)


@pytest.fixture
async def chat_relay(container: AsyncContainer) -> ChatRelay:
    return await container.get(ChatRelay)


def a_request(key: str = "ci-run-1", **changes: str) -> ProvisionRequest:
    fields = {"manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"} | changes
    return ProvisionRequest(idempotency_key=key, **fields)


def plant_request(
    fakes: FakeAdaptersProvider, scope: CustomerScope = SCOPE, *, at: datetime | None = None, region: str = "fsn1"
) -> LedgerEntry:
    """A committed accepted request of ``scope`` whose instance row the worker has not inserted."""
    instance_id = uuid.uuid4()
    entry = LedgerEntry(
        idempotency_key=f"key-{instance_id.hex[:8]}",
        fingerprint=a_request().fingerprint(),
        instance_id=instance_id,
        task_id=provision_task_id(instance_id),
        manifest_id="agent-default",
        region_id=region,
        tier_id="small",
        created_at=at or fakes.db.clock.now(),
    )
    fakes.db.plant(scope, entry)
    return entry


def plant_instance(
    fakes: FakeAdaptersProvider,
    scope: CustomerScope = SCOPE,
    *,
    status: InstanceStatus = InstanceStatus.RUNNING,
    at: datetime | None = None,
    with_server: bool = True,
    deleted: bool = False,
) -> Instance:
    """A committed instance of ``scope`` in ``status`` (and its request), with a server at the fake cloud."""
    entry = plant_request(fakes, scope, at=at)
    instance = Instance.new(entry, scope, entry.created_at).with_status(status)
    if with_server:
        spec = ServerSpec(instance.hostname, "cpx22", "ubuntu-24.04", "fsn1", instance.labels(), "#cloud-config\n")
        instance = instance.with_server(fakes.cloud.add_server(spec))
    if deleted:
        instance = instance.soft_deleted(entry.created_at)
    fakes.db.plant(scope, entry, instance)
    return instance
