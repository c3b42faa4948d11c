"""Smoke Chat and the usage ingest on fakes (finite streams: an in-process client is fine for these)."""

from __future__ import annotations

import httpx
import pytest

from smoke.domain.models import ChatEvent, CloudServer, Instance, InstanceStatus
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.api.conftest import SMOKE
from tests.unit.conftest import plant_instance, plant_request

REPLY = [
    ChatEvent("delta", '{"text": "hello"}', "1"),
    ChatEvent("delta", '{"text": " world"}', "2"),
    ChatEvent("done", '{"usage": {"provider": "simulated", "model": "echo-1"}}', "3"),
]
USAGE = {"request_id": "r1", "provider": "anthropic", "model": "m", "input_tokens": 3, "output_tokens": 5}


async def _instance(fakes: FakeAdaptersProvider, status: InstanceStatus = InstanceStatus.RUNNING) -> Instance:
    instance = plant_instance(fakes, status=status, with_server=False, deleted=status is InstanceStatus.DELETED)
    instance = instance.with_server(CloudServer(7, "s", "running", {}, "203.0.113.7"))
    fakes.db.instances[instance.id] = instance
    fakes.db.credentials[instance.id] = fakes.tokens.agent_token(instance.id).digest
    return instance


async def test_a_running_instance_relays_the_agents_events_as_sse(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    fakes.agents.reply = REPLY
    instance = await _instance(fakes)

    response = await client.post(f"{SMOKE}/instances/{instance.id}/chat", json={"message": "hello world"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert (response.headers["cache-control"], response.headers["x-accel-buffering"]) == ("no-cache", "no")
    assert response.text == (
        'event: delta\nid: 1\ndata: {"text": "hello"}\n\n'
        'event: delta\nid: 2\ndata: {"text": " world"}\n\n'
        'event: done\nid: 3\ndata: {"usage": {"provider": "simulated", "model": "echo-1"}}\n\n'
    )
    assert fakes.agents.turns == [
        ("http://203.0.113.7:8080", fakes.tokens.agent_token(instance.id).token, "hello world")
    ]


async def test_a_stream_that_ends_without_done_ends_with_an_error_event(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    fakes.agents.reply = REPLY[:1]
    instance = await _instance(fakes)

    response = await client.post(f"{SMOKE}/instances/{instance.id}/chat", json={"message": "hi"})

    assert response.text.endswith(
        'event: error\ndata: {"detail":"the agent ended the turn without its done event"}\n\n'
    )
    assert fakes.agents.streams[0].closed


@pytest.mark.parametrize("status", [InstanceStatus.PROVISIONING, InstanceStatus.FAILED, InstanceStatus.DELETED])
async def test_an_instance_that_is_not_running_is_409(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider, status: InstanceStatus
) -> None:
    instance = await _instance(fakes, status)

    response = await client.post(f"{SMOKE}/instances/{instance.id}/chat", json={"message": "hi"})

    assert (response.status_code, response.json()) == (409, {"detail": f"Instance is {instance.status}, not running"})
    assert fakes.agents.turns == []


async def test_an_accepted_request_not_inserted_yet_is_409_queued(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)

    response = await client.post(f"{SMOKE}/instances/{entry.instance_id}/chat", json={"message": "hi"})

    assert (response.status_code, response.json()) == (409, {"detail": "Instance is queued, not running"})


async def test_an_unreachable_agent_is_a_json_502(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> None:
    instance = await _instance(fakes)
    fakes.agents.down.add("http://203.0.113.7:8080")

    response = await client.post(f"{SMOKE}/instances/{instance.id}/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("body", "type_"), [({"message": "x" * 4001}, "string_too_long"), ({"message": ""}, "string_too_short")]
)
async def test_a_bad_message_is_422_at_the_message(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider, body: dict[str, str], type_: str
) -> None:
    instance = await _instance(fakes)

    response = await client.post(f"{SMOKE}/instances/{instance.id}/chat", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0] | {"msg": ""} == {"loc": ["body", "message"], "msg": "", "type": type_}


async def test_a_usage_report_is_recorded_once(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> None:
    instance = await _instance(fakes)
    agent = {"Authorization": f"Bearer {fakes.tokens.agent_token(instance.id).token}"}

    first = await client.post("/internal/v1/agent/usage-events", json=USAGE, headers=agent)
    again = await client.post("/internal/v1/agent/usage-events", json=USAGE, headers=agent)

    assert (first.json(), again.json()) == ({"recorded": True}, {"recorded": False})
    assert [e.instance_id for _, e in fakes.db.usage] == [instance.id]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer unknown-token", "Basic x", "Bearer test-ops-token"])
async def test_a_usage_report_without_a_valid_agent_token_is_401(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider, authorization: str | None
) -> None:
    await _instance(fakes)
    headers = {"Authorization": authorization} if authorization else {}
    client.headers.pop("Authorization")

    response = await client.post("/internal/v1/agent/usage-events", json=USAGE, headers=headers)

    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})
    assert fakes.db.usage == []


async def test_a_deleted_instances_agent_can_no_longer_report(
    client: httpx.AsyncClient, fakes: FakeAdaptersProvider
) -> None:
    instance = await _instance(fakes)
    token = fakes.tokens.agent_token(instance.id).token
    await client.delete(f"{SMOKE}/instances/{instance.id}")

    response = await client.post(
        "/internal/v1/agent/usage-events", json=USAGE, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
