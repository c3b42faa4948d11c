"""The smoke API's request side against real PostgreSQL and the saq queue on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from smoke.adapters.postgres.migrate import seed_customer
from smoke.adapters.postgres.reads import AsyncpgUsageEventStore
from smoke.domain.models import CustomerScope, UsageCount
from tests.integration.conftest import SMOKE, provision_body

OTHER = CustomerScope(uuid.UUID(int=0xAC), uuid.UUID(int=0xAE), uuid.UUID(int=0xAB))


async def test_fifty_concurrent_identical_provisions_store_one_request_and_one_job(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    responses = await asyncio.gather(*(api.post(f"{SMOKE}/provision", json=provision_body()) for _ in range(50)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    task_id = responses[0].json()["task_id"]
    assert await db.fetchval("SELECT count(*) FROM provision_ledger") == 1
    assert [tuple(row) for row in await db.fetch("SELECT key FROM saq_jobs")] == [(task_id,)]


async def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await api.post(f"{SMOKE}/provision", json=provision_body())

    reused = await api.post(f"{SMOKE}/provision", json=provision_body(region_id="nbg1"))

    assert reused.status_code == 422
    assert reused.json()["detail"][0]["type"] == "idempotency_key_reused"
    assert await db.fetchval("SELECT region_id FROM provision_ledger") == "fsn1"
    assert first.json() == (await api.post(f"{SMOKE}/provision", json=provision_body())).json()


async def test_an_extra_field_stores_nothing(api: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    for field in ("customer_id", "tenant_id", "subscription_id", "instance_id"):
        response = await api.post(f"{SMOKE}/provision", json=provision_body(**{field: str(uuid.uuid4())}))
        assert response.json()["detail"][0]["type"] == "extra_forbidden"

    assert await db.fetchval("SELECT count(*) FROM provision_ledger") == 0
    assert await db.fetchval("SELECT count(*) FROM saq_jobs") == 0


async def test_the_cap_holds_under_concurrent_requests(api: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    responses = await asyncio.gather(*(api.post(f"{SMOKE}/provision", json=provision_body(f"k{n}")) for n in range(12)))

    assert sorted(r.status_code for r in responses) == [200] * 3 + [409] * 9
    assert await db.fetchval("SELECT count(*) FROM provision_ledger") == 3
    assert await db.fetchval("SELECT count(*) FROM saq_jobs") == 3


async def test_delete_applies_the_recipe_in_the_database_and_queues_the_cleanup(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    instance_id = (await api.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]

    deleted = await api.delete(f"{SMOKE}/instances/{instance_id}")
    again = await api.delete(f"{SMOKE}/instances/{instance_id}")

    assert deleted.json() == again.json() == {"instance_id": instance_id, "status": "deleting"}
    row = await db.fetchrow("SELECT hostname, status, deleted_at FROM instances WHERE id = $1", uuid.UUID(instance_id))
    assert row is not None
    assert row["status"] == "deleting"
    assert row["hostname"] == f"smoke-{uuid.UUID(instance_id).hex[:12]}-deleted-{int(row['deleted_at'].timestamp())}"
    assert await db.fetchval("SELECT count(*) FROM saq_jobs WHERE key = $1", f"cleanup:{instance_id}") == 1
    poll = (await api.get(f"{SMOKE}/instances/by-key/ci-run-1")).json()
    assert poll == {"found": True, "instance_id": instance_id, "status": "deleting"}


async def test_another_customers_instance_answers_exactly_like_a_missing_one(
    api: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    seed_customer(database_url, OTHER)
    theirs = await _foreign_instance(db)
    missing = uuid.uuid4()

    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/llm-events")):
        foreign = await api.request(method, f"{SMOKE}/instances/{theirs}{suffix}")
        unknown = await api.request(method, f"{SMOKE}/instances/{missing}{suffix}")
        assert (foreign.status_code, foreign.content) == (unknown.status_code, unknown.content)
        assert foreign.status_code == 404

    assert await db.fetchval("SELECT deleted_at FROM instances WHERE id = $1", theirs) is None


async def test_llm_events_counts_this_instances_rows_in_the_window(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    mine = uuid.UUID((await api.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"])
    await api.delete(f"{SMOKE}/instances/{mine}")  # inserts the row; usage is kept after a delete
    other = uuid.UUID((await api.post(f"{SMOKE}/provision", json=provision_body("k2"))).json()["instance_id"])
    await api.delete(f"{SMOKE}/instances/{other}")
    await _usage(db, mine, "openai", 10)
    await _usage(db, mine, "anthropic", 100)
    await _usage(db, mine, "openai", 899)
    await _usage(db, mine, "google", 2000)
    await _usage(db, other, "mistral", 10)

    body = (await api.get(f"{SMOKE}/instances/{mine}/llm-events")).json()
    wide = (await api.get(f"{SMOKE}/instances/{mine}/llm-events", params={"window_seconds": 86400})).json()

    assert body == {"count": 3, "instance_id": str(mine), "providers": ["anthropic", "openai"], "window_seconds": 900}
    assert (wide["count"], wide["providers"]) == (4, ["anthropic", "google", "openai"])


async def test_the_window_includes_its_edge_and_excludes_the_future_on_the_database_clock(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    instance_id = uuid.UUID((await api.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"])
    await api.delete(f"{SMOKE}/instances/{instance_id}")

    async with db.transaction():  # now() is fixed inside a transaction: the edge is exact
        for offset, provider in ((900, "edge"), (900.000001, "past"), (-1, "future")):
            await _usage(db, instance_id, provider, offset)
        count = await AsyncpgUsageEventStore(db).count_window(instance_id, 900)  # type: ignore[arg-type]

    assert count == UsageCount(1, ("edge",))


async def test_readiness_reports_the_database_and_queue_reachable(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "unavailable": []})


async def _foreign_instance(db: asyncpg.Connection) -> uuid.UUID:
    instance_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO provision_ledger (customer_id, idempotency_key, fingerprint, instance_id, task_id, manifest_id, "
        "region_id, tier_id) VALUES ($1, 'theirs', 'f', $2, 't', 'agent-default', 'fsn1', 'small')",
        OTHER.customer_id,
        instance_id,
    )
    await db.execute(
        "INSERT INTO instances (id, customer_id, tenant_id, subscription_id, hostname, status, manifest_id, region_id, "
        "tier_id, created_at) VALUES ($1, $2, $3, $4, 'theirs', 'running', 'agent-default', 'fsn1', 'small', now())",
        instance_id,
        OTHER.customer_id,
        OTHER.tenant_id,
        OTHER.subscription_id,
    )
    return instance_id


async def _usage(db: asyncpg.Connection, instance_id: uuid.UUID, provider: str, age: float) -> None:
    await db.execute(
        "INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, output_tokens, "
        "created_at) VALUES ($1, $2, $3, 'm', 1, 1, now() - make_interval(secs => $4))",
        instance_id,
        str(uuid.uuid4()),
        provider,
        age,
    )
