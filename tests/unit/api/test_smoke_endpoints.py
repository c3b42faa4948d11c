from __future__ import annotations

import asyncio
import uuid

import httpx

from smoke.domain.models import Instance, InstanceStatus
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.api.conftest import SMOKE, provision_body
from tests.unit.conftest import OTHER, SCOPE, plant_instance


async def test_provision_answers_the_receipt(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> None:
    response = await client.post(f"{SMOKE}/provision", json=provision_body())

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["idempotency_key", "instance_id", "task_id"]
    assert body["idempotency_key"] == "ci-run-1"
    assert body["task_id"] == f"provision:{body['instance_id']}"
    assert fakes.queue.enqueued == [body["task_id"]]


async def test_concurrent_identical_provisions_answer_one_identical_body(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    responses = await asyncio.gather(*(client.post(f"{SMOKE}/provision", json=provision_body()) for _ in range(50)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert len(fakes.db.ledger) == 1
    assert len(fakes.queue.enqueued) == 1


async def test_the_same_key_with_another_body_is_idempotency_key_reused(client: httpx.AsyncClient) -> None:
    await client.post(f"{SMOKE}/provision", json=provision_body())

    response = await client.post(f"{SMOKE}/provision", json=provision_body(tier_id="large"))

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "idempotency_key"]
    assert response.json()["detail"][0]["type"] == "idempotency_key_reused"


async def test_past_the_live_instance_cap_provision_is_409(client: httpx.AsyncClient) -> None:
    for n in range(3):
        assert (await client.post(f"{SMOKE}/provision", json=provision_body(f"k{n}"))).status_code == 200

    response = await client.post(f"{SMOKE}/provision", json=provision_body("k3"))

    assert response.status_code == 409
    assert "cap" in response.json()["detail"]


async def test_poll_status_and_delete_follow_the_instance(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await client.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]
    assert (await client.get(f"{SMOKE}/instances/by-key/ci-run-1")).json() == {
        "found": False,
        "instance_id": None,
        "status": None,
    }
    queued = (await client.get(f"{SMOKE}/instances/{instance_id}")).json()
    entry = next(iter(fakes.db.ledger.values()))
    fakes.db.instances[entry.instance_id] = Instance.new(entry, SCOPE, fakes.db.clock.now())

    poll = (await client.get(f"{SMOKE}/instances/by-key/ci-run-1")).json()
    status = (await client.get(f"{SMOKE}/instances/{instance_id}")).json()
    deleted = (await client.delete(f"{SMOKE}/instances/{instance_id}")).json()
    after = (await client.get(f"{SMOKE}/instances/{instance_id}")).json()

    assert queued == {"hostname": f"smoke-{uuid.UUID(instance_id).hex[:12]}", "id": instance_id, "status": "queued"}
    assert poll == {"found": True, "instance_id": instance_id, "status": "provisioning"}
    assert status == {
        "hostname": f"smoke-{uuid.UUID(instance_id).hex[:12]}",
        "id": instance_id,
        "status": "provisioning",
    }
    assert deleted == {"instance_id": instance_id, "status": "deleting"}
    assert after["status"] == "deleting"
    assert after["hostname"].startswith(f"{status['hostname']}-deleted-")


async def test_another_customers_instance_is_404_exactly_like_a_missing_one(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    theirs = plant_instance(fakes, OTHER)
    missing = uuid.uuid4()

    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/llm-events"), ("GET", "/events")):
        foreign = await client.request(method, f"{SMOKE}/instances/{theirs.id}{suffix}")
        unknown = await client.request(method, f"{SMOKE}/instances/{missing}{suffix}")
        assert (foreign.status_code, foreign.content) == (unknown.status_code, unknown.content)
        assert foreign.json() == {"detail": "Instance not found"}


async def test_llm_events_counts_the_window(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> None:
    instance_id = (await client.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]

    response = await client.get(f"{SMOKE}/instances/{instance_id}/llm-events")

    assert response.json() == {"count": 0, "instance_id": instance_id, "providers": [], "window_seconds": 900}


async def test_the_openapi_document_names_every_operation_as_the_seed_does(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    summaries = {op["summary"] for path in document["paths"].values() for op in path.values()}
    assert {
        "Smoke Provision",
        "Smoke Poll",
        "Smoke Status",
        "Smoke Delete",
        "Smoke Chat",
        "Smoke Llm Events",
    } <= summaries
    statuses = {status for path in document["paths"].values() for op in path.values() for status in op["responses"]}
    assert "400" not in statuses  # validation errors are 422, as documented
    bearer = document["components"]["securitySchemes"]["BearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert document["openapi"].startswith("3.1")


async def test_instance_status_is_a_string_of_the_documented_set(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await client.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]
    entry = next(iter(fakes.db.ledger.values()))
    fakes.db.instances[entry.instance_id] = Instance.new(entry, SCOPE, fakes.db.clock.now()).with_status(
        InstanceStatus.RUNNING
    )

    assert (await client.get(f"{SMOKE}/instances/{instance_id}")).json()["status"] == "running"


async def test_options_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.options(f"{SMOKE}/instances/{uuid.uuid4()}")

    assert (response.status_code, response.headers["allow"]) == (204, "DELETE, GET, OPTIONS")
