"""One suite per port, run against its fake and its PostgreSQL adapter: what keeps the fakes honest."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from smoke.adapters.postgres.migrate import seed_customer
from smoke.adapters.postgres.reads import AsyncpgCatalog, AsyncpgInstanceReader, AsyncpgUsageEventStore
from smoke.adapters.postgres.stores import SqlAlchemyDatabase
from smoke.domain.models import CustomerScope, Instance, LedgerEntry, provision_task_id
from smoke.domain.ports import Catalog, Database, InstanceReader, UsageEventStore
from smoke.settings import Settings
from smoke.testing import FakeCatalog, FakeDatabase, FakeInstanceReader, FakeUsageEventStore, InMemoryDatabase

SCOPE = Settings().customer_scope()
OTHER = CustomerScope(uuid.UUID(int=0xAC), uuid.UUID(int=0xAE), uuid.UUID(int=0xAB))
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Stores:
    """One implementation's stores: the smoke customer's and, sharing the database, another customer's."""

    database: Database
    reader: InstanceReader
    usage: UsageEventStore
    catalog: Catalog
    theirs: Database
    their_reader: InstanceReader

    async def accepted(self, scope: CustomerScope = SCOPE, key: str | None = None, at: datetime = T0) -> LedgerEntry:
        """A committed ledger entry of ``scope``."""
        instance_id = uuid.uuid4()
        entry = LedgerEntry(
            key or f"key-{instance_id.hex[:8]}",
            "fingerprint",
            instance_id,
            provision_task_id(instance_id),
            "agent-default",
            "fsn1",
            "small",
            at,
        )
        async with self._database(scope).begin() as uow:
            await uow.ledger.add(entry)
            await uow.commit()
        return entry

    async def inserted(self, scope: CustomerScope = SCOPE, at: datetime = T0) -> Instance:
        """A committed instance row of ``scope`` (and its ledger entry)."""
        entry = await self.accepted(scope, at=at)
        async with self._database(scope).begin() as uow:
            instance = await uow.instances.claim(Instance.new(entry, scope, at))
            await uow.commit()
        return instance

    def _database(self, scope: CustomerScope) -> Database:
        return self.database if scope == SCOPE else self.theirs


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    seed_customer(database_url, OTHER)
    engine = create_async_engine("postgresql+asyncpg://" + database_url.split("://", 1)[1])
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


@pytest.fixture(params=["fake", "postgres"])
async def stores(request: pytest.FixtureRequest, engine: AsyncEngine, pool: asyncpg.Pool) -> Stores:
    if request.param == "fake":
        db = InMemoryDatabase()
        db.clock.current = datetime.now(UTC)
        return Stores(
            FakeDatabase(db, SCOPE),
            FakeInstanceReader(db, SCOPE),
            FakeUsageEventStore(db),
            FakeCatalog(),
            FakeDatabase(db, OTHER),
            FakeInstanceReader(db, OTHER),
        )
    request.getfixturevalue("clean_database")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    return Stores(
        SqlAlchemyDatabase(sessions, SCOPE),
        AsyncpgInstanceReader(pool, SCOPE),
        AsyncpgUsageEventStore(pool),
        AsyncpgCatalog(pool),
        SqlAlchemyDatabase(sessions, OTHER),
        AsyncpgInstanceReader(pool, OTHER),
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
