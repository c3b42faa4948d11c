"""The composition root: the one place that chooses an adapter for each port.

    container = make_container(Settings.from_env())
    async with container() as scope:
        provisioner = await scope.get(Provisioner)
    await container.close()

Tests pass providers that override some choices, e.g. ``make_container(settings, FakeAdaptersProvider())``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.config.engine import EngineConfig
from dishka import AsyncContainer, Provider, Scope, from_context, make_async_container, provide
from dishka.provider import BaseProvider
from saq import Queue
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smoke.adapters.agent import HttpAgentClient
from smoke.adapters.clock import SystemClock
from smoke.adapters.hetzner import HetznerCloudProvider, hetzner_client
from smoke.adapters.postgres.reads import AsyncpgCatalog, AsyncpgInstanceReader, AsyncpgUsageEventStore
from smoke.adapters.postgres.stores import (
    SqlAlchemyAgentCredentialStore,
    SqlAlchemyInstanceRepository,
    SqlAlchemyProvisionLedger,
    SqlAlchemyUnitOfWork,
)
from smoke.adapters.queue import JobPolicy, SaqJobQueue, connect_saq_queue, make_saq_queue
from smoke.adapters.readiness import ConnectionReadinessProbe
from smoke.adapters.tokens import HmacTokenIssuer
from smoke.domain.models import CustomerScope
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
from smoke.domain.services import (
    BuildPolicy,
    ChatRelay,
    Cleaner,
    Decommissioner,
    InstanceBuilder,
    InstanceLookup,
    Provisioner,
    ReconcilePolicy,
    Reconciler,
    UsageReader,
    UsageRecorder,
)
from smoke.settings import Settings, SettingsError

__all__ = ("make_container",)


def make_container(settings: Settings, *overrides: BaseProvider) -> AsyncContainer:
    """Build the container for ``settings``; ``overrides`` replace what they provide (tests, other apps)."""
    return make_async_container(
        CoreProvider(),
        PostgresProvider(),
        QueueProvider(),
        CloudProviders(),
        ServiceProvider(),
        *overrides,
        context={Settings: settings},
    )


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL", "required by this command but not set")
    return settings.database_url


class CoreProvider(Provider):
    settings = from_context(provides=Settings, scope=Scope.APP)

    @provide(scope=Scope.APP)
    def provide_customer_scope(self, settings: Settings) -> CustomerScope:
        return settings.customer_scope()

    @provide(scope=Scope.APP)
    def provide_clock(self) -> Clock:
        return SystemClock()

    @provide(scope=Scope.APP)
    def provide_token_issuer(self, settings: Settings) -> TokenIssuer:
        settings.require("AGENT_TOKEN_SECRET")
        assert settings.agent_token_secret is not None
        return HmacTokenIssuer(settings.agent_token_secret)


class PostgresProvider(Provider):
    """SQLAlchemy sessions for the write side, a plain asyncpg pool for the hot reads."""

    @provide(scope=Scope.APP)
    async def provide_engine(self, settings: Settings) -> AsyncIterator[AsyncEngine]:
        config = SQLAlchemyAsyncConfig(
            connection_string="postgresql+asyncpg://" + _database_url(settings).split("://", 1)[1],
            engine_config=EngineConfig(pool_size=5, max_overflow=5, pool_pre_ping=True, pool_timeout=5),
            session_config=AsyncSessionConfig(expire_on_commit=False),
        )
        engine = config.get_engine()
        yield engine
        await engine.dispose()

    @provide(scope=Scope.APP)
    def provide_session_maker(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(engine, expire_on_commit=False)

    @provide(scope=Scope.APP)
    async def provide_pool(self, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
        # min_size=0: the API starts, and /readyz says so, while the database is down.
        pool = await asyncpg.create_pool(_database_url(settings), min_size=0, max_size=10, command_timeout=30)
        yield pool
        await pool.close()

    @provide(scope=Scope.REQUEST)
    async def provide_session(self, maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        async with maker() as session:  # closing rolls back whatever was not committed
            yield session

    ledger = provide(SqlAlchemyProvisionLedger, provides=ProvisionLedger, scope=Scope.REQUEST)
    instances = provide(SqlAlchemyInstanceRepository, provides=InstanceRepository, scope=Scope.REQUEST)
    credentials = provide(SqlAlchemyAgentCredentialStore, provides=AgentCredentialStore, scope=Scope.REQUEST)
    uow = provide(SqlAlchemyUnitOfWork, provides=UnitOfWork, scope=Scope.REQUEST)
    reader = provide(AsyncpgInstanceReader, provides=InstanceReader, scope=Scope.APP)
    usage = provide(AsyncpgUsageEventStore, provides=UsageEventStore, scope=Scope.APP)
    catalog = provide(AsyncpgCatalog, provides=Catalog, scope=Scope.APP)


class QueueProvider(Provider):
    @provide(scope=Scope.APP)
    async def provide_saq_queue(self, settings: Settings) -> AsyncIterator[Queue]:
        queue = await connect_saq_queue(make_saq_queue(settings.queue_url or _database_url(settings)))
        yield queue
        await queue.disconnect()

    @provide(scope=Scope.APP)
    def provide_job_queue(self, queue: Queue, settings: Settings) -> JobQueue:
        heartbeat = settings.job_heartbeat_seconds
        return SaqJobQueue(
            queue,
            provision=JobPolicy(timeout=settings.provision_timeout_seconds + 120, heartbeat=heartbeat),
            cleanup=JobPolicy(timeout=600, heartbeat=heartbeat),
        )

    @provide(scope=Scope.APP)
    def provide_readiness(self, pool: asyncpg.Pool, queue: Queue) -> ReadinessProbe:
        return ConnectionReadinessProbe(pool, queue)


class CloudProviders(Provider):
    """Hetzner Cloud (or anything speaking its API, like the simulated cloud) and the agents on its servers."""

    @provide(scope=Scope.APP)
    async def provide_cloud(self, settings: Settings) -> AsyncIterator[CloudProvider]:
        settings.require("HETZNER_API_TOKEN")
        assert settings.hetzner_api_token is not None
        async with hetzner_client(settings.hetzner_api_url, settings.hetzner_api_token) as client:
            yield HetznerCloudProvider(client)

    @provide(scope=Scope.APP)
    async def provide_agents(self) -> AsyncIterator[AgentClient]:
        timeout = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            yield HttpAgentClient(client)


class ServiceProvider(Provider):
    @provide(scope=Scope.REQUEST)
    def provide_provisioner(
        self,
        settings: Settings,
        scope: CustomerScope,
        ledger: ProvisionLedger,
        catalog: Catalog,
        reader: InstanceReader,
        queue: JobQueue,
        uow: UnitOfWork,
        clock: Clock,
    ) -> Provisioner:
        return Provisioner(
            scope=scope,
            max_live_instances=settings.max_live_instances,
            ledger=ledger,
            catalog=catalog,
            reader=reader,
            queue=queue,
            uow=uow,
            clock=clock,
        )

    cleaner = provide(Cleaner, scope=Scope.REQUEST)
    usage_reader = provide(UsageReader, scope=Scope.APP)
    lookup = provide(InstanceLookup, scope=Scope.APP)
    decommissioner = provide(Decommissioner, scope=Scope.REQUEST)
    builder = provide(InstanceBuilder, scope=Scope.REQUEST)
    reconciler = provide(Reconciler, scope=Scope.REQUEST)
    usage_recorder = provide(UsageRecorder, scope=Scope.REQUEST)

    @provide(scope=Scope.APP)
    def provide_chat_relay(
        self,
        settings: Settings,
        scope: CustomerScope,
        reader: InstanceReader,
        agents: AgentClient,
        tokens: TokenIssuer,
    ) -> ChatRelay:
        return ChatRelay(
            scope=scope, reader=reader, agents=agents, tokens=tokens, agent_url_template=settings.agent_url_template
        )

    @provide(scope=Scope.APP)
    def provide_build_policy(self, settings: Settings) -> BuildPolicy:
        return BuildPolicy(
            timeout_seconds=settings.provision_timeout_seconds,
            agent_url_template=settings.agent_url_template,
            public_url=settings.public_url,
            poll_seconds=settings.provision_poll_seconds,
        )

    @provide(scope=Scope.APP)
    def provide_reconcile_policy(self, settings: Settings) -> ReconcilePolicy:
        return ReconcilePolicy(settings.provision_timeout_seconds, settings.instance_ttl_seconds)
