"""The read paths, the usage table and the catalog on a plain asyncpg pool: one statement, one round trip each.

An ORM session per request costs several times a single asyncpg query (docs/benchmarks.md), so Smoke Status,
Smoke Poll and Smoke Llm Events read here. Like the write side, the reader is bound to one customer.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from uuid import UUID

import asyncpg

from smoke.adapters.postgres.errors import translate_storage_errors
from smoke.adapters.postgres.stores import instance_from_row
from smoke.domain.errors import UnknownCatalogEntry
from smoke.domain.models import (
    AgentKind,
    CustomerScope,
    Instance,
    InstancePage,
    InstanceStatus,
    InstanceSummary,
    InstanceView,
    LlmBackend,
    Manifest,
    PageCursor,
    Placement,
    PollResult,
    StatusChange,
    UsageCount,
    UsageEvent,
)
from smoke.domain.ports import Catalog, InstanceReader, UsageEventStore

__all__ = ("AsyncpgCatalog", "AsyncpgInstanceReader", "AsyncpgUsageEventStore", "nothing_to_reset")

# The first branch answers whenever the row exists; the second only while the worker has not inserted it yet.
_VIEW = (
    "(SELECT hostname, status FROM instances WHERE id = $1 AND customer_id = $2) UNION ALL "
    "(SELECT NULL, 'queued' FROM provision_ledger WHERE instance_id = $1 AND customer_id = $2) LIMIT 1"
)
_POLL = (
    "SELECT i.id, i.status FROM provision_ledger l JOIN instances i ON i.id = l.instance_id "
    "WHERE l.customer_id = $1 AND l.idempotency_key = $2 AND i.customer_id = $1"
)
_INSTANCE = "SELECT * FROM instances WHERE id = $1 AND customer_id = $2"
_OWNS = "SELECT EXISTS (SELECT 1 FROM provision_ledger WHERE customer_id = $1 AND instance_id = $2)"
_ACCEPTED_AT = "SELECT created_at FROM provision_ledger WHERE customer_id = $1 AND instance_id = $2"
_HISTORY = (
    "SELECT h.status, h.reason, h.created_at FROM instance_status_history h JOIN instances i ON i.id = h.instance_id "
    "WHERE h.instance_id = $1 AND i.customer_id = $2 ORDER BY h.id"
)
_SUMMARIES = """
SELECT l.instance_id AS id, l.manifest_id, l.region_id, l.tier_id, l.created_at,
       i.hostname, coalesce(i.status, 'queued') AS status, i.deleted_at, i.failure_reason,
       (SELECT min(h.created_at) FROM instance_status_history h
         WHERE h.instance_id = l.instance_id AND h.status = 'running') AS running_at
FROM provision_ledger l LEFT JOIN instances i ON i.id = l.instance_id AND i.customer_id = l.customer_id
WHERE l.customer_id = $1
"""
_PAGE = (
    _SUMMARIES
    + """  AND ($2::text IS NULL OR coalesce(i.status, 'queued') = $2)
  AND ($3::timestamptz IS NULL OR (l.created_at, l.instance_id) < ($3, $4::uuid))
ORDER BY l.created_at DESC, l.instance_id DESC
LIMIT $5
"""
)
_RECENT = _SUMMARIES + "  AND l.created_at >= $2 ORDER BY l.created_at DESC, l.instance_id DESC LIMIT $3"
# A timeline starts with the acceptance of the request (ledger, seq 0), then the status history in its order.
_TIMELINES = """
SELECT instance_id, 'queued' AS status, NULL AS reason, created_at, 0::bigint AS seq
FROM provision_ledger WHERE customer_id = $1 AND instance_id = ANY($2::uuid[])
UNION ALL
SELECT h.instance_id, h.status, h.reason, h.created_at, h.id
FROM instance_status_history h JOIN instances i ON i.id = h.instance_id
WHERE h.instance_id = ANY($2::uuid[]) AND i.customer_id = $1
ORDER BY seq
"""
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
    "SELECT (SELECT to_jsonb(m) FROM manifests m WHERE id = $1 AND retired_at IS NULL) AS manifest, "
    "(SELECT location FROM regions WHERE id = $2 AND retired_at IS NULL) AS location, "
    "(SELECT server_type FROM tiers WHERE id = $3 AND retired_at IS NULL) AS server_type"
)


async def nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The ``reset`` of the read pool: its connections never carry session state, so none is reset.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` each time
    a connection goes back to the pool, a second round trip for every one-statement read. Nothing on this pool
    takes an advisory lock, declares a cursor, listens or sets a session variable (the write side, where advisory
    locks are taken, is SQLAlchemy's own engine), and asyncpg still rolls back a transaction left open before it
    calls this.
    """


class AsyncpgInstanceReader(InstanceReader):
    def __init__(self, pool: asyncpg.Pool, scope: CustomerScope) -> None:
        self._pool = pool
        self._customer_id = scope.customer_id

    @translate_storage_errors
    async def view(self, instance_id: UUID) -> InstanceView | None:
        row = await self._pool.fetchrow(_VIEW, instance_id, self._customer_id)
        if row is None:
            return None
        if row["hostname"] is None:
            return Instance.queued_view(instance_id)
        return InstanceView(instance_id, row["hostname"], InstanceStatus(row["status"]))

    @translate_storage_errors
    async def poll(self, idempotency_key: str) -> PollResult:
        row = await self._pool.fetchrow(_POLL, self._customer_id, idempotency_key)
        return PollResult(True, row["id"], InstanceStatus(row["status"])) if row else PollResult(False)

    @translate_storage_errors
    async def instance(self, instance_id: UUID) -> Instance | None:
        row = await self._pool.fetchrow(_INSTANCE, instance_id, self._customer_id)
        return instance_from_row(row) if row else None

    @translate_storage_errors
    async def owns(self, instance_id: UUID) -> bool:
        return bool(await self._pool.fetchval(_OWNS, self._customer_id, instance_id))

    @translate_storage_errors
    async def events(self, instance_id: UUID) -> list[StatusChange] | None:
        async with self._pool.acquire() as conn:
            accepted_at = await conn.fetchval(_ACCEPTED_AT, self._customer_id, instance_id)
            if accepted_at is None:
                return None
            rows = await conn.fetch(_HISTORY, instance_id, self._customer_id)
        return [
            StatusChange(instance_id, InstanceStatus.QUEUED, None, accepted_at),
            *(StatusChange(instance_id, InstanceStatus(r["status"]), r["reason"], r["created_at"]) for r in rows),
        ]

    @translate_storage_errors
    async def page(self, *, status: InstanceStatus | None, limit: int, before: PageCursor | None) -> InstancePage:
        rows = await self._pool.fetch(
            _PAGE,
            self._customer_id,
            None if status is None else str(status),
            None if before is None else before.created_at,
            None if before is None else before.instance_id,
            limit + 1,
        )
        summaries = [_summary(row) for row in rows[:limit]]
        last = summaries[-1] if len(rows) > limit else None
        return InstancePage(summaries, None if last is None else PageCursor(last.created_at, last.id))

    @translate_storage_errors
    async def recent(self, *, since: datetime, limit: int) -> list[InstanceSummary]:
        return [_summary(row) for row in await self._pool.fetch(_RECENT, self._customer_id, since, limit)]

    @translate_storage_errors
    async def timelines(self, instance_ids: Collection[UUID]) -> dict[UUID, list[StatusChange]]:
        timelines: dict[UUID, list[StatusChange]] = {}
        for r in await self._pool.fetch(_TIMELINES, self._customer_id, list(instance_ids)):
            change = StatusChange(r["instance_id"], InstanceStatus(r["status"]), r["reason"], r["created_at"])
            timelines.setdefault(r["instance_id"], []).append(change)
        return timelines


def _summary(row: asyncpg.Record) -> InstanceSummary:
    return InstanceSummary(
        id=row["id"],
        hostname=row["hostname"] or Instance.hostname_for(row["id"]),
        status=InstanceStatus(row["status"]),
        manifest_id=row["manifest_id"],
        region_id=row["region_id"],
        tier_id=row["tier_id"],
        created_at=row["created_at"],
        running_at=row["running_at"],
        deleted_at=row["deleted_at"],
        reason=row["failure_reason"],
    )


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
    """The catalog stored by ``smoke migrate --seed`` / ``smoke up``; retired entries are refused."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @translate_storage_errors
    async def resolve(self, manifest_id: str, region_id: str, tier_id: str) -> Placement:
        row = await self._pool.fetchrow(_RESOLVE, manifest_id, region_id, tier_id)
        assert row is not None, "a select without FROM returns one row"
        for name, column, value in (
            ("manifest_id", "manifest", manifest_id),
            ("region_id", "location", region_id),
            ("tier_id", "server_type", tier_id),
        ):
            if row[column] is None:
                raise UnknownCatalogEntry(name, value)
        return Placement(
            _manifest(json.loads(row["manifest"])), region_id, tier_id, row["location"], row["server_type"]
        )


def _manifest(stored: dict[str, object]) -> Manifest:
    llm = stored["llm"]
    return Manifest(
        id=str(stored["id"]),
        image=str(stored["image"]),
        agent=AgentKind(str(stored["agent"])),
        agent_port=int(str(stored["agent_port"])),
        user_data=None if stored["user_data"] is None else str(stored["user_data"]),
        llm=LlmBackend(**llm) if isinstance(llm, dict) else None,
    )
