"""Provisioning end to end: real PostgreSQL, the saq worker, the simulated cloud over loopback HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from smoke.settings import Settings
from tests.integration.conftest import SIM_TOKEN, SMOKE, provision_body
from tests.integration.support import reaches, reconcile, servers, until

SCOPE = Settings().customer_scope()


async def test_a_provision_reaches_running_with_exactly_one_server_as_asked(
    stack: httpx.AsyncClient, cloud: httpx.AsyncClient
) -> None:
    receipt = (await stack.post(f"{SMOKE}/provision", json=provision_body(region_id="nbg1", tier_id="medium"))).json()

    async def found() -> bool:
        return bool((await stack.get(f"{SMOKE}/instances/by-key/ci-run-1")).json()["found"])

    await until(found)
    await reaches(stack, receipt["instance_id"], "running")

    [server] = await servers(cloud)
    assert server["name"] == f"smoke-{uuid.UUID(receipt['instance_id']).hex[:12]}"
    assert server["labels"] == {
        "managed-by": "smoke",
        "smoke-instance-id": receipt["instance_id"],
        "smoke-customer-id": str(SCOPE.customer_id),
    }
    assert (server["location"], server["server_type"], server["image"]) == ("nbg1", "cpx32", "ubuntu-24.04")
    assert server["status"] == "running"


@pytest.mark.slow
async def test_twenty_provisions_under_cloud_faults_all_run_with_exactly_twenty_servers(
    stack: httpx.AsyncClient, cloud: httpx.AsyncClient
) -> None:
    faults = {"rate_limit_ratio": 0.3, "error_ratio": 0.3, "drop_create_response_ratio": 0.2}
    (await cloud.put("/_sim/faults", json={"hetzner": faults})).raise_for_status()
    bodies = [provision_body(f"storm-{n}") for n in range(20)]
    ids = [(await stack.post(f"{SMOKE}/provision", json=body)).json()["instance_id"] for body in bodies]

    await asyncio.gather(*(reaches(stack, instance_id, "running", timeout=240) for instance_id in ids))

    names = sorted(s["name"] for s in await servers(cloud))
    assert names == sorted(f"smoke-{uuid.UUID(i).hex[:12]}" for i in ids)


@pytest.mark.slow
async def test_delete_while_provisioning_leaves_no_server(stack: httpx.AsyncClient, cloud: httpx.AsyncClient) -> None:
    instance_id = (await stack.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]

    deleted = await stack.delete(f"{SMOKE}/instances/{instance_id}")

    assert deleted.json() == {"instance_id": instance_id, "status": "deleting"}
    await reaches(stack, instance_id, "deleted")
    await asyncio.sleep(1)  # a provision job still in flight must not leave a server behind
    assert await servers(cloud) == []


@pytest.mark.slow
async def test_delete_of_a_running_instance_deletes_its_server(
    stack: httpx.AsyncClient, cloud: httpx.AsyncClient
) -> None:
    instance_id = (await stack.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]
    await reaches(stack, instance_id, "running")

    await stack.delete(f"{SMOKE}/instances/{instance_id}")

    await reaches(stack, instance_id, "deleted")
    assert await servers(cloud) == []


@pytest.mark.slow
async def test_a_delete_racing_the_server_creation_leaves_no_server(
    stack: httpx.AsyncClient, cloud: httpx.AsyncClient
) -> None:
    for n in range(5):
        instance_id = (await stack.post(f"{SMOKE}/provision", json=provision_body(f"race-{n}"))).json()["instance_id"]

        async def server_created() -> bool:
            return bool(await servers(cloud))

        await until(server_created, interval=0.01)
        await stack.delete(f"{SMOKE}/instances/{instance_id}")
        await reaches(stack, instance_id, "deleted")

        async def no_servers() -> bool:
            return await servers(cloud) == []

        await until(no_servers, timeout=10)


async def test_a_planted_orphan_server_is_deleted_by_reconcile(
    stack: httpx.AsyncClient, cloud: httpx.AsyncClient, cloud_url: str
) -> None:
    labels = {
        "managed-by": "smoke",
        "smoke-instance-id": str(uuid.uuid4()),
        "smoke-customer-id": str(SCOPE.customer_id),
    }
    orphan: dict[str, object] = {
        "name": "planted-orphan",
        "server_type": "cpx22",
        "image": "ubuntu-24.04",
        "location": "fsn1",
        "labels": labels,
    }
    bystanders = [
        orphan | {"name": "not-ours", "labels": {"team": "other"}},
        orphan | {"name": "staging", "labels": labels | {"smoke-customer-id": str(uuid.uuid4())}},
        orphan | {"name": "old-stranger", "labels": {"managed-by": "smoke", "smoke-instance-id": str(uuid.uuid4())}},
    ]
    for body in (orphan, *bystanders):
        created = await cloud.post("/v1/servers", json=body, headers={"Authorization": f"Bearer {SIM_TOKEN}"})
        assert created.status_code == 201

    report = await reconcile(stack)

    assert report["orphans_deleted"] == 1

    async def only_the_bystanders_left() -> bool:
        return sorted(s["name"] for s in await servers(cloud)) == ["not-ours", "old-stranger", "staging"]

    await until(only_the_bystanders_left)
