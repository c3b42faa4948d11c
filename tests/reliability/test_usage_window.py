"""Row 15 of the test plan: Smoke Llm Events against an oracle, at 10^6 background rows, under concurrent inserts.

tests/integration/test_api_on_postgres.py checks the window's exact edges on the database clock (inside one
transaction) and that other instances' rows are not counted. Here: random ages against a Python oracle for several
windows, a soft-deleted instance (its usage is kept and counted), 10^6 rows of 1000 other customers' instances,
the query plan and latency at that size, and counts taken while the agent keeps reporting.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid

import asyncpg

from smoke.adapters.postgres.migrate import seed_customer
from smoke.adapters.postgres.reads import _COUNT
from smoke.domain.models import CustomerScope
from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.stack import SMOKE, provision_body, served_stack, stack_settings

OTHER = CustomerScope(uuid.UUID(int=0xBC), uuid.UUID(int=0xBE), uuid.UUID(int=0xBB))
BACKGROUND_ROWS, BACKGROUND_INSTANCES = 1_000_000, 1000
WINDOWS = (1, 60, 900, 1800, 86400)
MARGIN = 5.0
"""Seconds kept clear around every window edge: the oracle's "now" and the database's differ by the test's runtime."""


async def _background(db: asyncpg.Connection) -> float:
    started = time.perf_counter()
    await db.execute(
        "INSERT INTO provision_ledger (customer_id, idempotency_key, fingerprint, instance_id, task_id, manifest_id, "
        "region_id, tier_id) SELECT $1, 'bg-' || g, 'f', gen_random_uuid(), 't', 'agent-default', 'fsn1', 'small' "
        "FROM generate_series(1, $2) g",
        OTHER.customer_id,
        BACKGROUND_INSTANCES,
    )
    await db.execute(
        "INSERT INTO instances (id, customer_id, tenant_id, subscription_id, hostname, status, manifest_id, region_id, "
        "tier_id, created_at) SELECT instance_id, $1, $2, $3, idempotency_key, 'running', 'agent-default', 'fsn1', "
        "'small', now() FROM provision_ledger WHERE customer_id = $1",
        OTHER.customer_id,
        OTHER.tenant_id,
        OTHER.subscription_id,
    )
    await db.execute(
        "WITH bg AS (SELECT array_agg(id) AS ids FROM instances WHERE customer_id = $1) "
        "INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, output_tokens, "
        "created_at) SELECT bg.ids[1 + g % $3], 'bg-' || g, 'provider-' || (g % 7), 'm', 1, 1, "
        "now() - make_interval(secs => (g::bigint * 7919) % 172800) FROM bg, generate_series(1, $2) g",
        OTHER.customer_id,
        BACKGROUND_ROWS,
        BACKGROUND_INSTANCES,
    )
    await db.execute("ANALYZE llm_usage_events")
    return time.perf_counter() - started


def _age(rng: random.Random) -> float:
    """A row age (seconds before now; negative: in the future) clear of every window edge."""
    while True:
        age = rng.uniform(-600, 100_000)
        if all(abs(age - edge) > MARGIN for edge in (0, *WINDOWS)):
            return age


async def test_llm_events_matches_an_oracle_at_a_million_rows_and_under_concurrent_reports(
    settings: Settings, cloud_url: str, db: asyncpg.Connection, database_url: str, row_test: str
) -> None:
    seed_customer(database_url, OTHER)
    rng = random.Random(15)
    load_seconds = await _background(db)
    async with served_stack(stack_settings(settings, cloud_url), worker=False) as stack:
        deleted = (await stack.api.post(f"{SMOKE}/provision", json=provision_body("window"))).json()["instance_id"]
        await stack.api.delete(f"{SMOKE}/instances/{deleted}")  # inserts the row, soft-deleted: usage is kept
        ages = [(_age(rng), f"provider-{rng.randint(0, 3)}") for _ in range(300)]
        await db.executemany(
            "INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, output_tokens, "
            "created_at) VALUES ($1, $2, $3, 'm', 1, 1, now() - make_interval(secs => $4))",
            [(uuid.UUID(deleted), f"r-{n}", provider, age) for n, (age, provider) in enumerate(ages)],
        )
        miscounts = []
        for window in WINDOWS:
            expected_rows = [p for age, p in ages if 0 <= age <= window]
            body = (
                await stack.api.get(f"{SMOKE}/instances/{deleted}/llm-events", params={"window_seconds": window})
            ).json()
            if (body["count"], body["providers"]) != (len(expected_rows), sorted(set(expected_rows))):
                miscounts.append((window, body["count"], len(expected_rows)))

        latencies = []
        for _ in range(200):
            started = time.perf_counter()
            response = await stack.api.get(f"{SMOKE}/instances/{deleted}/llm-events", params={"window_seconds": 86400})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
        plan = "\n".join(
            row[0] for row in await db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {_COUNT}", uuid.UUID(deleted), 86400.0)
        )

        reports = 200
        before = (await stack.api.get(f"{SMOKE}/instances/{deleted}/llm-events")).json()["count"]

        async def report() -> None:
            for n in range(reports):
                await db.execute(
                    "INSERT INTO llm_usage_events (instance_id, request_id, provider, model, input_tokens, "
                    "output_tokens) VALUES ($1, $2, 'live', 'm', 1, 1)",
                    uuid.UUID(deleted),
                    f"live-{n}",
                )
                await asyncio.sleep(0)

        async def count() -> list[int]:
            seen = []
            for _ in range(100):
                seen.append((await stack.api.get(f"{SMOKE}/instances/{deleted}/llm-events")).json()["count"])
            return seen

        _, seen = await asyncio.gather(report(), count())
        after = (await stack.api.get(f"{SMOKE}/instances/{deleted}/llm-events")).json()["count"]
    await db.execute("TRUNCATE llm_usage_events")

    regressions = sum(b < a for a, b in itertools.pairwise(seen))
    out_of_range = sum(not before <= n <= before + reports for n in seen)
    figures.record(
        "15",
        f"window counts vs oracle, {BACKGROUND_ROWS} background rows of {BACKGROUND_INSTANCES} other instances",
        row_test,
        background_load_s=load_seconds,
        windows=len(WINDOWS),
        rows_of_instance=len(ages),
        miscounts=len(miscounts),
        query_p50_ms=figures.percentile(latencies, 50) * 1000,
        query_p95_ms=figures.percentile(latencies, 95) * 1000,
        index_scan="ix_llm_usage_events_window" in plan and "Seq Scan" not in plan,
        concurrent_counts=len(seen),
        count_regressions=regressions,
        counts_out_of_range=out_of_range,
        final_count_ok=after == before + reports,
    )
    assert miscounts == []
    assert "ix_llm_usage_events_window" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert (regressions, out_of_range, after) == (0, 0, before + reports)
    assert figures.percentile(latencies, 95) < 0.1
