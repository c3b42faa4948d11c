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
from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.config.engine import EngineConfig
from dishka import AsyncContainer, Provider, Scope, ValidationSettings, from_context, make_async_container, provide
from dishka.provider import BaseProvider
from saq import Queue
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smoke.adapters.agent import HttpAgentClient, agent_session
from smoke.adapters.budget import ProcessRequestBudget
from smoke.adapters.clock import SystemClock
from smoke.adapters.hetzner import HetznerCloudProvider, hetzner_client
from smoke.adapters.postgres.budget import PostgresRequestBudget, bucket_key
from smoke.adapters.postgres.reads import (
    AsyncpgCatalog,
    AsyncpgInstanceReader,
    AsyncpgUsageEventStore,
    nothing_to_reset,
)
from smoke.adapters.postgres.stores import SqlAlchemyDatabase
from smoke.adapters.queue import JobPolicy, SaqJobQueue, connect_saq_queue, make_saq_queue
from smoke.adapters.readiness import ConnectionReadinessProbe
from smoke.adapters.tokens import HmacTokenIssuer
from smoke.adapters.user_data import CloudInitUserData
from smoke.domain.agent_config import USAGE_PATH, AgentUrls
from smoke.domain.catalog import CatalogSpec
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
from smoke.domain.services import (
    AccountCheck,
    AgentFirewall,
    ChatRelay,
    Cleaner,
    Dashboard,
    Deleter,
    FirewallPolicy,
    InstanceLookup,
    Provisioner,
    ProvisionPolicy,
    ProvisionRequests,
    ReconcilePolicy,
    Reconciler,
    ServerWatch,
    SpendGuard,
    UsageReader,
    UsageRecorder,
)
from smoke.settings import Settings

__all__ = ("ProcessBudgetProvider", "make_container")

STRICT_VALIDATION = ValidationSettings(nothing_overridden=True, implicit_override=True, nothing_decorated=True)


def make_container(settings: Settings, *overrides: BaseProvider) -> AsyncContainer:
    """Build the container for ``settings``; ``overrides`` replace what they provide (tests, other apps).

    Override validation is on: an override that replaces nothing is an error, not a silent no-op.
    """
    return make_async_container(
        CoreProvider(),
        PostgresProvider(),
        QueueProvider(),
        CloudProviders(),
        PolicyProvider(),
        ServiceProvider(),
        *overrides,
        context={Settings: settings},
        validation_settings=STRICT_VALIDATION,
    )


class ProcessBudgetProvider(Provider):
    """For a command that talks to the cloud alone and has no database (``smoke catalog check``): the request
    budget in this process's memory."""

    @provide(scope=Scope.APP, override=True)
    def provide_request_budget(self) -> RequestBudget:
        return ProcessRequestBudget()


class CoreProvider(Provider):
    settings = from_context(provides=Settings, scope=Scope.APP)

    @provide(scope=Scope.APP)
    def provide_customer_scope(self, settings: Settings) -> CustomerScope:
        return settings.customer_scope()

    @provide(scope=Scope.APP)
    def provide_catalog_spec(self, settings: Settings) -> CatalogSpec:
        """The configured catalog (``SMOKE_CATALOG``), as the OpenAPI document's enums and ``smoke catalog check``."""
        return settings.catalog

    @provide(scope=Scope.APP)
    def provide_clock(self) -> Clock:
        return SystemClock()

    @provide(scope=Scope.APP)
    def provide_token_issuer(self, settings: Settings) -> TokenIssuer:
        return HmacTokenIssuer(settings.required("AGENT_TOKEN_SECRET"))


class PostgresProvider(Provider):
    """SQLAlchemy sessions for the write side, a plain asyncpg pool for the reads; both bound to the customer."""

    scope = Scope.APP

    @provide
    async def provide_engine(self, settings: Settings) -> AsyncIterator[AsyncEngine]:
        config = SQLAlchemyAsyncConfig(
            connection_string="postgresql+asyncpg://" + settings.required("DATABASE_URL").split("://", 1)[1],
            engine_config=EngineConfig(pool_size=5, max_overflow=5, pool_pre_ping=True, pool_timeout=5),
            session_config=AsyncSessionConfig(expire_on_commit=False),
        )
        engine = config.get_engine()
        yield engine
        await engine.dispose()

    @provide
    def provide_session_maker(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(engine, expire_on_commit=False)

    @provide
    async def provide_pool(self, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
        # min_size=0: the API starts, and /readyz says so, while the database is down.
        # reset: one round trip per read, not two (nothing_to_reset says why that is safe on this pool).
        pool = await asyncpg.create_pool(
            settings.required("DATABASE_URL"), min_size=0, max_size=10, command_timeout=30, reset=nothing_to_reset
        )
        yield pool
        await pool.close()

    database = provide(SqlAlchemyDatabase, provides=Database)
    reader = provide(AsyncpgInstanceReader, provides=InstanceReader)
    usage = provide(AsyncpgUsageEventStore, provides=UsageEventStore)
    catalog = provide(AsyncpgCatalog, provides=Catalog)

    @provide
    def provide_request_budget(self, pool: asyncpg.Pool, settings: Settings) -> RequestBudget:
        """The Hetzner project's bucket, one row for every worker on this database."""
        return PostgresRequestBudget(pool, bucket_key(settings.hetzner_api_url, settings.required("HETZNER_API_TOKEN")))


class QueueProvider(Provider):
    @provide(scope=Scope.APP)
    async def provide_saq_queue(self, settings: Settings) -> AsyncIterator[Queue]:
        queue = await connect_saq_queue(make_saq_queue(settings.queue_url or settings.required("DATABASE_URL")))
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

    scope = Scope.APP

    @provide
    async def provide_cloud(self, settings: Settings, budget: RequestBudget) -> AsyncIterator[CloudProvider]:
        async with hetzner_client(settings.hetzner_api_url, settings.required("HETZNER_API_TOKEN")) as client:
            yield HetznerCloudProvider(client, budget=budget)

    @provide
    async def provide_agents(self) -> AsyncIterator[AgentClient]:
        async with agent_session(connect=5.0, read=60.0) as session:
            yield HttpAgentClient(session)

    @provide
    def provide_user_data(self, settings: Settings) -> UserDataRenderer:
        return CloudInitUserData(settings.llm_api_keys)


class PolicyProvider(Provider):
    """What the services are told by the settings, one value object each."""

    scope = Scope.APP

    @provide
    def provide_spend_guard(self, settings: Settings) -> SpendGuard:
        return SpendGuard(settings.max_live_instances)

    @provide
    def provide_agent_urls(self, settings: Settings) -> AgentUrls:
        return AgentUrls(settings.agent_url_template)

    @provide
    def provide_provision_policy(self, settings: Settings) -> ProvisionPolicy:
        return ProvisionPolicy(
            timeout_seconds=settings.provision_timeout_seconds,
            usage_url=settings.public_url + USAGE_PATH,
            poll_seconds=settings.provision_poll_seconds,
            ssh_keys=settings.hetzner_ssh_keys,
        )

    @provide
    def provide_firewall_policy(self, settings: Settings) -> FirewallPolicy:
        ports = tuple(manifest.agent_port for manifest in settings.catalog.manifests.values())
        return FirewallPolicy(settings.agent_allowed_cidrs, ports)

    @provide
    def provide_reconcile_policy(self, settings: Settings) -> ReconcilePolicy:
        return ReconcilePolicy(settings.provision_timeout_seconds, settings.instance_ttl_seconds)


class ServiceProvider(Provider):
    """The domain services. All stateless and APP-scoped: each opens the units of work it needs."""

    scope = Scope.APP

    provision_requests = provide(ProvisionRequests)
    provisioner = provide(Provisioner)
    server_watch = provide(ServerWatch)
    deleter = provide(Deleter)
    cleaner = provide(Cleaner)
    reconciler = provide(Reconciler)
    lookup = provide(InstanceLookup)
    dashboard = provide(Dashboard)
    usage_reader = provide(UsageReader)
    usage_recorder = provide(UsageRecorder)
    chat_relay = provide(ChatRelay)
    account_check = provide(AccountCheck)
    firewall = provide(AgentFirewall)
