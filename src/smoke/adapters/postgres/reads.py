"""The hot read paths and the usage table on a plain asyncpg pool: one statement, one round trip each.

An ORM session per request costs about 8x a single asyncpg query on this kind of machine
(shared/reference/performance-anchors.md), so Smoke Status, Smoke Poll and Smoke Llm Events read here.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from smoke.adapters.postgres.errors import translate_storage_errors
from smoke.adapters.postgres.stores import instance_from_row
from smoke.domain.errors import UnknownCatalogEntry
from smoke.domain.models import Instance, InstanceStatus, InstanceView, Placement, PollResult, UsageCount, UsageEvent
from smoke.domain.ports import Catalog, InstanceReader, UsageEventStore

__all__ = ("AsyncpgCatalog", "AsyncpgInstanceReader", "AsyncpgUsageEventStore")

_VIEW = "SELECT hostname, status FROM instances WHERE id = $1 AND customer_id = $2"
_POLL = (
    "SELECT i.id, i.status FROM provision_ledger l JOIN instances i ON i.id = l.instance_id "
    "WHERE l.customer_id = $1 AND l.idempotency_key = $2"
)
_INSTANCE = "SELECT * FROM instances WHERE id = $1 AND customer_id = $2"
_OWNS = "SELECT EXISTS (SELECT 1 FROM provision_ledger WHERE customer_id = $1 AND instance_id = $2)"
_RECORD = (
    "INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, output_tokens) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance_id, request_id) DO NOTHING RETURNING id"
)
_COUNT = (
    "SELECT count(*) AS count, coalesce(array_agg(DISTINCT provider ORDER BY provider), '{}') AS providers "
    "FROM llm_usage_events WHERE instance_id = $1 "
    "AND created_at >= now() - make_interval(secs => $2) AND created_at <= now()"
)
_RESOLVE = (
    "SELECT (SELECT image FROM manifests WHERE id = $1) AS image, "
    "(SELECT location FROM regions WHERE id = $2) AS location, "
    "(SELECT server_type FROM tiers WHERE id = $3) AS server_type"
)


class AsyncpgInstanceReader(InstanceReader):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @translate_storage_errors
    async def view(self, customer_id: UUID, instance_id: UUID) -> InstanceView | None:
        row = await self._pool.fetchrow(_VIEW, instance_id, customer_id)
        return InstanceView(instance_id, row["hostname"], InstanceStatus(row["status"])) if row else None

    @translate_storage_errors
    async def poll(self, customer_id: UUID, idempotency_key: str) -> PollResult:
        row = await self._pool.fetchrow(_POLL, customer_id, idempotency_key)
        return PollResult(True, row["id"], InstanceStatus(row["status"])) if row else PollResult(False)

    @translate_storage_errors
    async def instance(self, customer_id: UUID, instance_id: UUID) -> Instance | None:
        row = await self._pool.fetchrow(_INSTANCE, instance_id, customer_id)
        return instance_from_row(row) if row else None

    @translate_storage_errors
    async def owns(self, customer_id: UUID, instance_id: UUID) -> bool:
        return bool(await self._pool.fetchval(_OWNS, customer_id, instance_id))


class AsyncpgUsageEventStore(UsageEventStore):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @translate_storage_errors
    async def record(self, event: UsageEvent) -> bool:
        inserted = await self._pool.fetchval(
            _RECORD,
            event.instance_id,
            event.request_id,
            event.provider,
            event.model,
            event.input_tokens,
            event.output_tokens,
        )
        return inserted is not None

    @translate_storage_errors
    async def count_window(self, instance_id: UUID, window_seconds: int) -> UsageCount:
        row = await self._pool.fetchrow(_COUNT, instance_id, float(window_seconds))
        assert row is not None, "an aggregate returns one row"
        return UsageCount(row["count"], tuple(row["providers"]))


class AsyncpgCatalog(Catalog):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @translate_storage_errors
    async def resolve(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        row = await self._pool.fetchrow(_RESOLVE, manifest_id, region_id, tier_id)
        assert row is not None, "a select without FROM returns one row"
        for name, column, value in (
            ("manifest_id", "image", manifest_id),
            ("region_id", "location", region_id),
            ("tier_id", "server_type", tier_id),
        ):
            if row[column] is None:
                raise UnknownCatalogEntry(name, value)
        return Placement(manifest_id, region_id, tier_id, row["image"], row["location"], row["server_type"])
