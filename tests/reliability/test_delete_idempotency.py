"""Row 8 of the test plan: Smoke Delete twice concurrently and again later, in every state; the provider's 404.

The integration suite deletes once while provisioning, once while running, and races a delete with the server
creation. Here: ten concurrent DELETEs per instance (one provisioning, two running), three more once deleted, a
server already gone at the provider, and the figures: consistent answers, cleanup jobs and attempts per instance.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx

from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.stack import (
    SIM_TOKEN,
    SMOKE,
    audit,
    provision_body,
    served_stack,
    stack_settings,
    status_of,
    wait_for_status,
)

CONCURRENT, LATER = 10, 3


async def test_concurrent_and_repeated_deletes_answer_consistently_clean_up_once_and_leave_no_server(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, db: asyncpg.Connection, row_test: str
) -> None:
    async with served_stack(stack_settings(settings, cloud_url)) as stack:
        running, gone_at_provider = [
            (await stack.api.post(f"{SMOKE}/provision", json=provision_body(f"del-{n}"))).json()["instance_id"]
            for n in range(2)
        ]
        await wait_for_status(stack.api, [running, gone_at_provider], "running")
        [server] = [
            s
            for s in (await cloud.get("/_sim/state")).json()["servers"]
            if s["labels"]["smoke-instance-id"] == gone_at_provider
        ]
        deleted_directly = await cloud.delete(
            f"/v1/servers/{server['id']}", headers={"Authorization": f"Bearer {SIM_TOKEN}"}
        )
        provisioning = (await stack.api.post(f"{SMOKE}/provision", json=provision_body("del-2"))).json()["instance_id"]
        receipts = [provisioning, running, gone_at_provider]

        answers: dict[str, list[httpx.Response]] = {}
        state_at_delete = {i: await status_of(stack.api, i) or "not inserted yet" for i in receipts}
        for instance_id in receipts:
            answers[instance_id] = list(
                await asyncio.gather(*(stack.api.delete(f"{SMOKE}/instances/{instance_id}") for _ in range(CONCURRENT)))
            )
        await wait_for_status(stack.api, receipts, "deleted")
        later = {i: [await stack.api.delete(f"{SMOKE}/instances/{i}") for _ in range(LATER)] for i in receipts}
        await asyncio.sleep(1)  # a provision job still in flight must not bring a server back
        history = await db.fetch("SELECT instance_id::text AS id, status FROM instance_status_history ORDER BY id")
        hostnames = {str(r["id"]): r["hostname"] for r in await db.fetch("SELECT id, hostname FROM instances")}
        cleanup_jobs = await db.fetchval("SELECT count(*) FROM saq_jobs WHERE key LIKE 'cleanup:%'")
        state = await audit(db, cloud)
        requests = (await cloud.get("/_sim/state")).json()["requests"]

    inconsistent = 0
    for instance_id in receipts:
        first = answers[instance_id]
        inconsistent += sum(
            r.status_code != 200 or r.json() != {"instance_id": instance_id, "status": "deleting"} for r in first
        )
        inconsistent += sum(
            r.status_code != 200 or r.json() != {"instance_id": instance_id, "status": "deleted"}
            for r in later[instance_id]
        )
    transitions = Counter((row["id"], row["status"]) for row in history)
    soft_deletes = [transitions[(i, "deleting")] for i in receipts]
    marked_deleted = [transitions[(i, "deleted")] for i in receipts]
    server_deletes = requests.get("DELETE /v1/servers/{id}", 0) - 1  # minus the one sent directly
    figures.record(
        "8",
        f"{CONCURRENT} concurrent + {LATER} later DELETEs per instance (provisioning, running, gone at provider)",
        row_test,
        instances=len(receipts),
        states_at_delete=sorted(state_at_delete.values()),
        deletes=len(receipts) * (CONCURRENT + LATER),
        inconsistent_answers=inconsistent,
        soft_deletes_per_instance=max(soft_deletes),
        cleanup_jobs=cleanup_jobs,
        server_delete_requests=server_deletes,
        servers_left=state.servers,
        orphaned=state.orphaned,
    )
    assert state_at_delete[provisioning] in ("queued", "provisioning")
    assert deleted_directly.status_code == 200
    assert inconsistent == 0
    assert soft_deletes == marked_deleted == [1, 1, 1]
    assert cleanup_jobs == len(receipts)
    assert all("-deleted-" in hostnames[i] for i in receipts)
    assert state.statuses == {"deleted": 3}
    assert (state.servers, state.orphaned) == (0, 0)
