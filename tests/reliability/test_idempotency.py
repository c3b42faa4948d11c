"""Rows 1-3 of the test plan: concurrent duplicate provisions, key validation and reuse, replay after completion.

The integration suite already shows 50 concurrent identical requests storing one request and one job (API only,
no worker). Here the worker runs too, so the figures cover what reaches the cloud: servers and instance rows per key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from urllib.parse import quote

import asyncpg
import httpx

from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.stack import (
    SMOKE,
    audit,
    provision_body,
    served_stack,
    stack_settings,
    wait_for_status,
)

ROUNDS, CONCURRENCY = 5, 32


async def test_concurrent_identical_provisions_create_one_request_job_row_and_server_per_key(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    bodies_per_key: dict[str, set[bytes]] = {}

    async def post(client: httpx.AsyncClient, key: str) -> None:
        started = time.perf_counter()
        response = await client.post(f"{SMOKE}/provision", json=provision_body(key))
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] += 1
        bodies_per_key.setdefault(key, set()).add(response.content)

    async with served_stack(stack_settings(settings, cloud_url)) as stack:
        for round_ in range(ROUNDS):
            key = f"dup-{round_}"
            await asyncio.gather(*(post(stack.api, key) for _ in range(CONCURRENCY)))
        instance_ids = [json.loads(body)["instance_id"] for bodies in bodies_per_key.values() for body in bodies]
        await wait_for_status(stack.api, instance_ids, "running")
        jobs = Counter(row["key"] for row in await db.fetch("SELECT key FROM saq_jobs WHERE key LIKE 'provision:%'"))
        ledger = Counter(
            row["idempotency_key"] for row in await db.fetch("SELECT idempotency_key FROM provision_ledger")
        )
        state = await audit(db, cloud)
        requests = (await cloud.get("/_sim/state")).json()["requests"]

    duplicates = (
        sum(len(b) - 1 for b in bodies_per_key.values())
        + sum(n - 1 for n in ledger.values())
        + sum(n - 1 for n in jobs.values())
        + state.duplicated
    )
    figures.record(
        "1",
        f"{ROUNDS} rounds x {CONCURRENCY} concurrent identical provisions, worker running",
        row_test,
        attempted=ROUNDS * CONCURRENCY,
        statuses=dict(statuses),
        keys=ROUNDS,
        ledger_rows=sum(ledger.values()),
        provision_jobs=sum(jobs.values()),
        instance_rows=state.instances,
        servers=state.servers,
        server_creates=requests.get("POST /v1/servers", 0),
        duplicated=duplicates,
        p50_ms=figures.percentile(latencies, 50) * 1000,
        p95_ms=figures.percentile(latencies, 95) * 1000,
    )
    assert statuses == {200: ROUNDS * CONCURRENCY}
    assert duplicates == 0
    assert (sum(ledger.values()), sum(jobs.values()), state.instances, state.servers) == (ROUNDS,) * 4
    assert requests.get("POST /v1/servers") == ROUNDS
    assert state.orphaned == 0


BAD_KEYS: list[tuple[str, object, str]] = [
    ("missing", ..., "missing"),
    ("empty", "", "string_too_short"),
    ("256 characters", "k" * 256, "string_too_long"),
    ("a number", 12345, "type_error"),
    ("null", None, "type_error"),
    ("an object", {"key": "k"}, "type_error"),
]
GOOD_KEYS: list[tuple[str, str]] = [
    ("255 characters", "k" * 255),
    ("non-ASCII", "schlüssel-ключ-鍵-🔑"),
    ("control characters", "tab\there\x01\x7f"),
    ("spaces, query and fragment characters", " a?c#d%20 "),
    ("quoted sf-string", '"8e03978e-40d5-43e8-bc93-6894a57f9324"'),
]


async def test_bad_keys_are_refused_and_leave_nothing_and_odd_valid_keys_round_trip(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    outcomes: dict[str, bool] = {}
    async with served_stack(stack_settings(settings, cloud_url), worker=False) as stack:
        for name, key, type_ in BAD_KEYS:
            body: dict[str, object] = dict(provision_body("x"))
            if key is ...:
                del body["idempotency_key"]
            else:
                body["idempotency_key"] = key
            response = await stack.api.post(f"{SMOKE}/provision", json=body)
            detail = response.json()["detail"]
            outcomes[f"refused {name}"] = (
                response.status_code == 422
                and detail[0]["loc"] == ["body", "idempotency_key"]
                and detail[0]["type"] == type_
            )
        long_poll = await stack.api.get(f"{SMOKE}/instances/by-key/{'k' * 256}")
        outcomes["poll of a 256-character key refused"] = long_poll.status_code == 422
        side_effects = await db.fetchval("SELECT count(*) FROM provision_ledger") + await db.fetchval(
            "SELECT count(*) FROM saq_jobs"
        )

        for name, key in GOOD_KEYS:
            first = await stack.api.post(f"{SMOKE}/provision", json=provision_body(key))
            replay = await stack.api.post(f"{SMOKE}/provision", json=provision_body(key))
            stored = await db.fetchval("SELECT instance_id FROM provision_ledger WHERE idempotency_key = $1", key)
            outcomes[f"accepted {name}"] = (
                first.status_code == 200
                and first.content == replay.content
                and first.json()["idempotency_key"] == key
                and str(stored) == first.json()["instance_id"]
            )
            poll = await stack.api.get(f"{SMOKE}/instances/by-key/{quote(key, safe='')}")
            outcomes[f"polled {name}"] = poll.status_code == 200 and poll.json()["found"] is False

    failed = sorted(name for name, ok in outcomes.items() if not ok)
    figures.record(
        "2",
        "idempotency key validation (a body field of Smoke Provision)",
        row_test,
        cases=len(outcomes),
        failed=len(failed),
        side_effects_of_refused=side_effects,
        extra_servers=len((await cloud.get("/_sim/state")).json()["servers"]),
    )
    assert failed == []
    assert side_effects == 0


async def test_a_key_with_a_slash_is_either_refused_or_can_be_polled(
    settings: Settings, cloud_url: str, db: asyncpg.Connection
) -> None:
    async with served_stack(stack_settings(settings, cloud_url), worker=False) as stack:
        for key in ("a/b", "trailing/", "/leading", "a//b"):
            provisioned = await stack.api.post(f"{SMOKE}/provision", json=provision_body(key))
            if provisioned.status_code == 422:
                assert provisioned.json()["detail"][0]["loc"] == ["body", "idempotency_key"]
                continue
            poll = await stack.api.get(f"{SMOKE}/instances/by-key/{quote(key, safe='')}")
            assert (poll.status_code, poll.json()["found"]) == (200, False), key


async def test_a_key_reused_with_another_body_is_refused_in_flight_and_after_completion_and_replays_are_exact(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    mismatches, refused, jobs_on_replay = 0, Counter[str](), 0
    async with served_stack(stack_settings(settings, cloud_url)) as stack:
        first = await stack.api.post(f"{SMOKE}/provision", json=provision_body("reuse"))
        in_flight = await stack.api.post(f"{SMOKE}/provision", json=provision_body("reuse", region_id="nbg1"))
        refused["in flight"] = in_flight.status_code
        instance_id = first.json()["instance_id"]
        await wait_for_status(stack.api, [instance_id], "running")
        job_before = await db.fetchrow("SELECT job, status FROM saq_jobs WHERE key = $1", first.json()["task_id"])

        await asyncio.sleep(1)  # the row 3 "t + 1 s" replay
        for changes in (
            {"region_id": "nbg1"},
            {"tier_id": "large"},
            {"manifest_id": "agent-default", "tier_id": "medium"},
        ):
            refused[f"after completion {changes}"] = (
                await stack.api.post(f"{SMOKE}/provision", json=provision_body("reuse", **changes))
            ).status_code
        for _ in range(5):
            replay = await stack.api.post(f"{SMOKE}/provision", json=provision_body("reuse"))
            mismatches += (replay.status_code, replay.content) != (first.status_code, first.content)
        job_after = await db.fetchrow("SELECT job, status FROM saq_jobs WHERE key = $1", first.json()["task_id"])
        jobs_on_replay = await db.fetchval("SELECT count(*) FROM saq_jobs WHERE key LIKE 'provision:%'") - 1
        jobs_on_replay += job_after != job_before

        await stack.api.delete(f"{SMOKE}/instances/{instance_id}")
        await wait_for_status(stack.api, [instance_id], "deleted")
        after_delete = await stack.api.post(f"{SMOKE}/provision", json=provision_body("reuse"))
        mismatches += (after_delete.status_code, after_delete.content) != (first.status_code, first.content)
        stored = await db.fetchrow("SELECT region_id, tier_id FROM provision_ledger WHERE idempotency_key = 'reuse'")
        requests = (await cloud.get("/_sim/state")).json()["requests"]

    figures.record(
        "3",
        "replay after completion (t+1 s) and after delete; same key, another body",
        row_test,
        replays=6,
        replay_mismatches=mismatches,
        jobs_enqueued_on_replay=jobs_on_replay,
        reuse_statuses=dict(Counter(refused.values())),
        server_creates=requests.get("POST /v1/servers", 0),
    )
    assert set(refused.values()) == {422}
    assert (mismatches, jobs_on_replay) == (0, 0)
    assert stored is not None
    assert (stored["region_id"], stored["tier_id"]) == ("fsn1", "small")
    assert requests.get("POST /v1/servers") == 1
