"""One suite per port, run against its fake and its PostgreSQL adapter: what keeps the fakes honest."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from smoke.adapters.postgres.migrate import seed
from smoke.adapters.postgres.reads import AsyncpgCatalog, AsyncpgInstanceReader, AsyncpgUsageEventStore
from smoke.adapters.postgres.stores import (
    SqlAlchemyAgentCredentialStore,
    SqlAlchemyInstanceRepository,
    SqlAlchemyProvisionLedger,
    SqlAlchemyUnitOfWork,
)
from smoke.domain.models import CustomerScope, Instance, LedgerEntry, provision_task_id
from smoke.domain.ports import (
    AgentCredentialStore,
    Catalog,
    InstanceReader,
    InstanceRepository,
    ProvisionLedger,
    UnitOfWork,
    UsageEventStore,
)
from smoke.settings import Settings
from smoke.testing import (
    FakeAgentCredentialStore,
    FakeCatalog,
    FakeInstanceReader,
    FakeInstanceRepository,
    FakeProvisionLedger,
    FakeUnitOfWork,
    FakeUsageEventStore,
    InMemoryDatabase,
)

SCOPE = Settings().customer_scope()
OTHER = CustomerScope(uuid.UUID(int=0xAC), uuid.UUID(int=0xAE), uuid.UUID(int=0xAB))
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Stores:
    """The stores of one unit of work, plus the read side, on one implementation."""

    ledger: ProvisionLedger
    instances: InstanceRepository
    credentials: AgentCredentialStore
    uow: UnitOfWork
    reader: InstanceReader
    usage: UsageEventStore
    catalog: Catalog

    async def accepted(self, scope: CustomerScope = SCOPE, key: str | None = None, at: datetime = T0) -> LedgerEntry:
        """A committed ledger entry."""
        instance_id = uuid.uuid4()
        entry = LedgerEntry(
            scope.customer_id,
            key or f"key-{instance_id.hex[:8]}",
            "fingerprint",
            instance_id,
            provision_task_id(instance_id),
            "agent-default",
            "fsn1",
            "small",
            at,
        )
        await self.ledger.add(entry)
        await self.uow.commit()
        return entry

    async def inserted(self, scope: CustomerScope = SCOPE, at: datetime = T0) -> Instance:
        """A committed instance row (and its ledger entry)."""
        instance = await self.instances.claim(Instance.new(await self.accepted(scope, at=at), scope, at))
        await self.uow.commit()
        return instance


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    seed(database_url, OTHER)
    engine = create_async_engine("postgresql+asyncpg://" + database_url.split("://", 1)[1])
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


@pytest.fixture(params=["fake", "postgres"])
async def stores(request: pytest.FixtureRequest, engine: AsyncEngine, pool: asyncpg.Pool) -> AsyncIterator[Stores]:
    if request.param == "fake":
        db = InMemoryDatabase()
        db.clock.current = datetime.now(UTC)
        yield Stores(
            FakeProvisionLedger(db),
            FakeInstanceRepository(db),
            FakeAgentCredentialStore(db),
            FakeUnitOfWork(),
            FakeInstanceReader(db),
            FakeUsageEventStore(db),
            FakeCatalog(),
        )
        return
    request.getfixturevalue("clean_database")
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield _postgres_stores(session, pool)


def _postgres_stores(session: AsyncSession, pool: asyncpg.Pool) -> Stores:
    return Stores(
        SqlAlchemyProvisionLedger(session),
        SqlAlchemyInstanceRepository(session),
        SqlAlchemyAgentCredentialStore(session),
        SqlAlchemyUnitOfWork(session),
        AsyncpgInstanceReader(pool),
        AsyncpgUsageEventStore(pool),
        AsyncpgCatalog(pool),
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
