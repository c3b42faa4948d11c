"""Rows 6 and 7 of the test plan: a Hetzner error storm, and creates whose answer is lost.

tests/integration/test_provisioning.py already runs 20 provisions under rate limits, retryable errors and dropped
create answers and checks there are exactly 20 servers; tests/unit/test_hetzner_retry_policy.py checks which codes
are retried (never ``locked``, ``uniqueness_error`` or other 4xx) and the backoff. Here the same faults produce the
figures: attempts per job, Hetzner calls per provision, creates per key, adoptions, completion time.
"""

from __future__ import annotations

import json
import time
from typing import Any

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
    until,
    wait_for_status,
)

STORM = {"rate_limit_ratio": 0.2, "error_ratio": 0.2, "drop_create_response_ratio": 0.1, "latency_ms": 30}
STORM_PROVISIONS = 8
AMBIGUOUS_PROVISIONS = 10


async def _attempts(db: asyncpg.Connection) -> list[int]:
    """How many times saq ran each provision job."""
    rows = await db.fetch("SELECT job FROM saq_jobs WHERE key LIKE 'provision:%'")
    return [int(json.loads(bytes(row["job"]))["attempts"]) for row in rows]


def _hetzner_calls(requests: dict[str, int]) -> int:
    return sum(n for route, n in requests.items() if " /v1/" in route)


async def test_a_hetzner_error_storm_ends_with_every_provision_running_and_one_server_each(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    (await cloud.put("/_sim/faults", json={"hetzner": STORM})).raise_for_status()
    async with served_stack(stack_settings(settings, cloud_url)) as stack:
        started = time.monotonic()
        ids = [
            (await stack.api.post(f"{SMOKE}/provision", json=provision_body(f"storm-{n}"))).json()["instance_id"]
            for n in range(STORM_PROVISIONS)
        ]
        reached = await wait_for_status(stack.api, ids, "running", timeout=180)
        attempts = await _attempts(db)
        state = await audit(db, cloud)
        requests: dict[str, Any] = (await cloud.get("/_sim/state")).json()["requests"]

    completion = [at - started for at in reached.values()]
    creates = requests.get("POST /v1/servers", 0)
    figures.record(
        "6",
        f"Hetzner storm {STORM}",
        row_test,
        attempted=STORM_PROVISIONS,
        succeeded=len(reached),
        success_rate=len(reached) / STORM_PROVISIONS,
        job_attempts_mean=sum(attempts) / len(attempts),
        job_attempts_max=max(attempts),
        hetzner_calls_per_provision=_hetzner_calls(requests) / STORM_PROVISIONS,
        creates_per_key=creates / STORM_PROVISIONS,
        duplicated=state.duplicated,
        orphaned=state.orphaned,
        completion_p50_s=figures.percentile(completion, 50),
        completion_p95_s=figures.percentile(completion, 95),
    )
    assert (state.servers, state.duplicated, state.orphaned) == (STORM_PROVISIONS, 0, 0)


async def _provision_with_failing_create_actions(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, timeout: int, wait: float
) -> tuple[list[str | None], Any, float]:
    (await cloud.put("/_sim/faults", json={"hetzner": {"action_error_ratio": 1.0}})).raise_for_status()
    async with served_stack(stack_settings(settings, cloud_url, provision_timeout_seconds=timeout)) as stack:
        started = time.monotonic()
        ids = [
            (await stack.api.post(f"{SMOKE}/provision", json=provision_body(f"doomed-{n}"))).json()["instance_id"]
            for n in range(3)
        ]

        async def created() -> bool:
            return len((await cloud.get("/_sim/state")).json()["servers"]) == 3

        await until(created)  # their create actions are doomed; later actions (the deletes) succeed
        (await cloud.put("/_sim/faults", json={"hetzner": {"action_error_ratio": 0.0}})).raise_for_status()
        await wait_for_status(stack.api, ids, "failed", timeout=wait)
        elapsed = time.monotonic() - started
        reasons = [row["failure_reason"] for row in await db.fetch("SELECT failure_reason FROM instances")]
        return reasons, await audit(db, cloud), elapsed


async def test_a_server_whose_create_action_fails_ends_failed_and_leaves_no_server(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    reasons, state, elapsed = await _provision_with_failing_create_actions(settings, cloud_url, cloud, db, 3, 30)

    figures.record(
        "6",
        "create action fails (permanent), provision timeout 3 s: failed, nothing left",
        row_test,
        attempted=3,
        failed=state.statuses.get("failed", 0),
        servers_left=state.servers,
        orphaned=state.orphaned,
        time_to_failed_s=elapsed,
    )
    assert state.statuses == {"failed": 3}
    assert all(reasons)
    assert (state.servers, state.orphaned) == (0, 0)


async def test_a_server_whose_create_action_fails_fails_at_once_not_at_the_provision_timeout(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    _, state, _ = await _provision_with_failing_create_actions(settings, cloud_url, cloud, db, 120, 8)

    assert (state.statuses, state.servers) == ({"failed": 3}, 0)


async def test_creates_whose_answer_is_lost_are_adopted_never_duplicated(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    (await cloud.put("/_sim/faults", json={"hetzner": {"drop_create_response_ratio": 1.0}})).raise_for_status()
    async with served_stack(stack_settings(settings, cloud_url)) as stack:
        ids = [
            (await stack.api.post(f"{SMOKE}/provision", json=provision_body(f"ambiguous-{n}"))).json()["instance_id"]
            for n in range(AMBIGUOUS_PROVISIONS)
        ]
        await wait_for_status(stack.api, ids, "running", timeout=120)
        attempts = await _attempts(db)
        report = await stack.reconcile()
        state = await audit(db, cloud)
        requests = (await cloud.get("/_sim/state")).json()["requests"]

    creates = requests.get("POST /v1/servers", 0)
    figures.record(
        "7",
        "every create answer lost (server created, connection dropped)",
        row_test,
        attempted=AMBIGUOUS_PROVISIONS,
        running=state.statuses.get("running", 0),
        create_requests=creates,
        servers=state.servers,
        adoptions=AMBIGUOUS_PROVISIONS,
        retried_creates_refused_as_taken=creates - AMBIGUOUS_PROVISIONS,
        job_attempts_max=max(attempts),
        duplicated=state.duplicated,
        orphaned=state.orphaned,
        orphans_deleted_by_reconcile=report["orphans_deleted"],
    )
    assert state.statuses == {"running": AMBIGUOUS_PROVISIONS}
    assert (state.servers, state.duplicated, state.orphaned, report["orphans_deleted"]) == (
        AMBIGUOUS_PROVISIONS,
        0,
        0,
        0,
    )
