"""Row 4 of the test plan: a crash between the ledger commit and the enqueue of the provision job.

Saq enqueues on a connection of its own, so recording a request and queuing its job are two writes. Two faults
between them: the enqueue fails (the API answers 503), and the API process is SIGKILLed (the client gets no answer).
Either way the request is committed; the client's retry or the reconciler must get it to ``running``, with one
server, and nothing may be provisioned twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from smoke.serving import free_port
from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.faults import EnqueueFaults, ImpatientReconciler
from tests.reliability.stack import (
    SMOKE,
    audit,
    provision_body,
    served_stack,
    stack_settings,
    until,
    wait_for_status,
)

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 10
KILLS = 4


async def _ledger(db: asyncpg.Connection, keys: list[str]) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT idempotency_key, instance_id FROM provision_ledger WHERE idempotency_key = ANY($1)", keys
    )
    return {row["idempotency_key"]: str(row["instance_id"]) for row in rows}


async def test_a_failed_enqueue_after_commit_answers_503_and_the_retry_or_the_reconciler_recovers_it(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    faults = EnqueueFaults(TRIALS)
    keys = [f"lost-enqueue-{n}" for n in range(TRIALS)]
    retried, left = keys[: TRIALS // 2], keys[TRIALS // 2 :]
    async with served_stack(stack_settings(settings, cloud_url), faults, ImpatientReconciler()) as stack:
        first = await asyncio.gather(*(stack.api.post(f"{SMOKE}/provision", json=provision_body(k)) for k in keys))
        committed = await _ledger(db, keys)
        jobs_after_fault = await db.fetchval("SELECT count(*) FROM saq_jobs WHERE key LIKE 'provision:%'")

        started = {}
        replays = {}
        for key in retried:  # a CI client retries a 503
            started[committed[key]] = time.monotonic()
            replays[key] = await stack.api.post(f"{SMOKE}/provision", json=provision_body(key))
        for key in left:  # nobody retries these: the reconcile cron finds their lost jobs
            started[committed[key]] = time.monotonic()
        report = await stack.reconcile()
        reached = await wait_for_status(stack.api, committed.values(), "running")
        late = {k: await stack.api.post(f"{SMOKE}/provision", json=provision_body(k)) for k in left}
        state = await audit(db, cloud)

    recovery = [reached[i] - started[i] for i in committed.values()]
    acknowledged = {k: r.json()["instance_id"] for k, r in (replays | late).items() if r.status_code == 200}
    figures.record(
        "4",
        "enqueue fails after the ledger commit (StorageUnavailable)",
        row_test,
        attempted=TRIALS,
        answered_503=sum(r.status_code == 503 for r in first),
        committed=len(committed),
        jobs_after_fault=jobs_after_fault,
        acknowledged=len(acknowledged),
        recovered_by_retry=len(retried),
        reconcile_requeues=report["requeued_provisions"],
        recovered=len(reached),
        lost=TRIALS - len(reached),
        duplicated=state.duplicated,
        orphaned=state.orphaned,
        recovery_p50_s=figures.percentile(recovery, 50),
        recovery_p95_s=figures.percentile(recovery, 95),
    )
    assert [r.status_code for r in first] == [503] * TRIALS
    assert all(r.json() == {"detail": r.json()["detail"]} and r.headers.get("retry-after") for r in first)
    assert (len(committed), jobs_after_fault) == (TRIALS, 0)
    assert acknowledged == committed  # every answer names the instance the ledger allocated first
    assert report["requeued_provisions"] >= len(left)  # a retried job not picked up yet is re-queued too (a no-op)
    assert (len(reached), state.servers, state.duplicated, state.orphaned) == (TRIALS, TRIALS, 0, 0)


async def test_an_api_killed_between_commit_and_enqueue_loses_nothing(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    configured = stack_settings(settings, cloud_url)
    keys = [f"killed-api-{n}" for n in range(KILLS)]
    outcomes: list[str] = []
    await _clear_of_the_reconcile_cron(seconds=40)
    async with served_stack(configured, ImpatientReconciler()) as stack:
        for key in keys:
            outcomes.append(await _provision_through_a_crashing_api(configured, key))
        committed = await _ledger(db, keys)
        started = dict.fromkeys(committed.values(), time.monotonic())
        retried = {k: await stack.api.post(f"{SMOKE}/provision", json=provision_body(k)) for k in keys[::2]}
        report = await stack.reconcile()
        reached = await wait_for_status(stack.api, committed.values(), "running")
        state = await audit(db, cloud)

    recovery = [reached[i] - started[i] for i in committed.values()]
    figures.record(
        "4",
        "API SIGKILLed between the ledger commit and the enqueue",
        row_test,
        attempted=KILLS,
        outcomes={o: outcomes.count(o) for o in sorted(set(outcomes))},
        committed=len(committed),
        recovered_by_retry=len(retried),
        reconcile_requeues=report["requeued_provisions"],
        recovered=len(reached),
        lost=len(committed) - len(reached),
        duplicated=state.duplicated,
        orphaned=state.orphaned,
        recovery_p50_s=figures.percentile(recovery, 50),
        recovery_p95_s=figures.percentile(recovery, 95),
    )
    assert outcomes == ["killed"] * KILLS
    assert len(committed) == KILLS
    assert all(r.status_code == 200 and r.json()["instance_id"] == committed[k] for k, r in retried.items())
    assert report["requeued_provisions"] >= KILLS - len(retried)
    assert (len(reached), state.servers, state.duplicated, state.orphaned) == (KILLS, KILLS, 0, 0)


async def _clear_of_the_reconcile_cron(seconds: float) -> None:
    """Wait, if need be, until the worker's reconcile cron (each minute, on the minute) will not fire for ``seconds``.

    The test counts what its own reconcile pass re-queues: a cron pass in between (with the impatient policy) would
    re-queue some of the lost jobs first.
    """
    until_the_minute = 60 - time.time() % 60
    if until_the_minute < seconds:
        await asyncio.sleep(until_the_minute + 2)


async def _provision_through_a_crashing_api(settings: Settings, key: str) -> str:
    """Send one provision to an API process that dies after committing it; how the call ended."""
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url or "",
        "OPS_BEARER_TOKEN": settings.ops_bearer_token or "",
        "AGENT_TOKEN_SECRET": settings.agent_token_secret or "",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crashing_api", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return process.poll() is not None

            await until(ready, timeout=60)
            headers = {"Authorization": f"Bearer {settings.ops_bearer_token}"}
            try:
                response = await client.post(f"{SMOKE}/provision", json=provision_body(key), headers=headers)
            except httpx.TransportError:
                outcome = "killed"
            else:
                outcome = f"answered {response.status_code}"
        process.wait(10)
        return outcome if process.returncode == -signal.SIGKILL else f"{outcome}, exit {process.returncode}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
