"""Row 5 of the test plan: the worker SIGKILLed at a random point of provisioning, round after round.

tests/integration/test_recovery.py kills one worker once, while the agent is held down. Here each round queues a
few provisions, kills the worker at a random moment once it has started on them (before the server exists, after
Hetzner answered, after the row was recorded, ...), starts a new worker, and counts what came out.

Recovery time is dominated by saq: a job of a dead worker is noticed once its heartbeat is older than
``JOB_HEARTBEAT_SECONDS`` (3 s here), and ``PostgresQueue.sweep`` then handles stuck jobs one at a time, waiting up to
5 s (its ``abort`` argument, which ``Worker`` does not pass) for each to acknowledge the abort. So the last of N jobs
held by a dead worker comes back after about heartbeat + 5 s x N.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.stack import (
    SMOKE,
    audit,
    provision_body,
    served_stack,
    stack_settings,
    start_worker_process,
    until,
    wait_for_status,
)

PER_ROUND = 3
# (seconds after the first instance row appears, Hetzner faults until the kill)
ROUND_PLAN: tuple[tuple[float, dict[str, float]], ...] = (
    # every create answer is lost: the servers exist, their ids are not recorded, the worker is backing off
    (0.8, {"latency_ms": 150, "drop_create_response_ratio": 1.0}),
    # slow Hetzner: some provisions are still creating, others wait for their server to boot
    (0.2, {"latency_ms": 150}),
)
ROUNDS = len(ROUND_PLAN)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def _phases(db: asyncpg.Connection, ids: list[str], cloud: httpx.AsyncClient | None = None) -> list[str]:
    """Where each provision is: queued, creating (row inserted, server id not recorded), waiting-for-boot, running.

    With ``cloud``, "creating" tells whether Hetzner has created the server already (the answer not recorded yet).
    """
    labelled = set()
    if cloud is not None:
        servers = (await cloud.get("/_sim/state")).json()["servers"]
        labelled = {s["labels"].get("smoke-instance-id") for s in servers}
    rows = {
        str(r["id"]): r
        for r in await db.fetch("SELECT id, status, provider_server_id FROM instances WHERE id::text = ANY($1)", ids)
    }
    phases = []
    for instance_id in ids:
        row = rows.get(instance_id)
        if row is None:
            phases.append("queued")
        elif row["status"] != "provisioning":
            phases.append(str(row["status"]))
        else:
            if row["provider_server_id"] is not None:
                phases.append("waiting-for-boot")
            elif cloud is None:
                phases.append("creating")
            else:
                phases.append("created-not-recorded" if instance_id in labelled else "creating")
    return phases


async def test_a_worker_killed_at_random_points_of_provisioning_loses_and_duplicates_nothing(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    db: asyncpg.Connection,
    workers: list[subprocess.Popen[bytes]],
    row_test: str,
) -> None:
    rng = random.Random(5)
    configured = stack_settings(settings, cloud_url)
    phases: Counter[str] = Counter()
    recovery: list[float] = []
    ids: list[str] = []
    async with served_stack(configured, worker=False) as stack:
        workers.append(start_worker_process(configured))
        for round_, (delay, faults) in enumerate(ROUND_PLAN):
            (await cloud.put("/_sim/faults", json={"hetzner": faults})).raise_for_status()
            batch = [
                (await stack.api.post(f"{SMOKE}/provision", json=provision_body(f"kill-{round_}-{n}"))).json()[
                    "instance_id"
                ]
                for n in range(PER_ROUND)
            ]
            ids.extend(batch)

            async def started(batch: list[str] = batch) -> bool:
                return any(p != "queued" for p in await _phases(db, batch))

            await until(started, timeout=60, interval=0.01)
            await asyncio.sleep(delay + rng.uniform(0.0, 0.05))
            workers[-1].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            workers[-1].wait(10)
            phases.update(await _phases(db, batch, cloud))
            (
                await cloud.put("/_sim/faults", json={"hetzner": {"latency_ms": 0, "drop_create_response_ratio": 0.0}})
            ).raise_for_status()
            workers.append(start_worker_process(configured))
            reached = await wait_for_status(stack.api, batch, "running", timeout=90)
            recovery.extend(at - killed_at for at in reached.values())
        report = await stack.reconcile()
        state = await audit(db, cloud)
        creates = (await cloud.get("/_sim/state")).json()["requests"].get("POST /v1/servers", 0)

    figures.record(
        "5",
        f"worker SIGKILLed at a random point, {ROUNDS} rounds x {PER_ROUND} provisions",
        row_test,
        attempted=len(ids),
        acknowledged=len(ids),
        phases_at_kill=dict(phases),
        lost=len(ids) - state.statuses.get("running", 0),
        duplicated=state.duplicated,
        orphaned=state.orphaned,
        orphans_deleted_by_reconcile=report["orphans_deleted"],
        server_creates=creates,
        recovered=len(recovery),
        recovery_p50_s=figures.percentile(recovery, 50),
        recovery_p95_s=figures.percentile(recovery, 95),
        recovery_max_s=max(recovery),
    )
    assert state.statuses == {"running": len(ids)}
    assert (state.servers, state.duplicated, state.orphaned, report["orphans_deleted"]) == (len(ids), 0, 0, 0)
    assert creates == len(ids)
