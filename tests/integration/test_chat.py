"""Smoke Chat and usage metering against a real server on loopback, the worker and the simulated agents."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from smoke.adapters.tokens import HmacTokenIssuer
from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.sse import SseEvent, SseParser
from smoke.worker import running_worker
from tests.integration.conftest import SMOKE, provision_body, stack_settings
from tests.integration.support import reaches, servers, until

TEN_WORDS = "one two three four five six seven eight nine ten"


@contextlib.asynccontextmanager
async def serving_api(settings: Settings, cloud_url: str, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a real loopback port (agents report usage to it) with an in-process worker."""
    port = free_port()
    configured = stack_settings(settings, cloud_url).replace(public_url=f"http://127.0.0.1:{port}", **changes)
    container = make_container(configured)
    async with (
        serve_asgi(create_app(container), port=port) as url,
        running_worker(container, configured),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        client.headers["Authorization"] = f"Bearer {settings.ops_bearer_token}"
        yield client


@pytest.fixture
async def api(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving_api(settings, cloud_url) as client:
        yield client


async def running_instance(api: httpx.AsyncClient, key: str = "chat-1") -> str:
    instance_id = str((await api.post(f"{SMOKE}/provision", json=provision_body(key))).json()["instance_id"])
    await reaches(api, instance_id, "running")
    return instance_id


async def read_events(response: httpx.Response) -> list[tuple[float, SseEvent]]:
    parser, events = SseParser(), list[tuple[float, SseEvent]]()
    async for chunk in response.aiter_raw():
        events.extend((time.monotonic(), event) for event in parser.feed(chunk))
    return events


async def chat(api: httpx.AsyncClient, instance_id: str, message: str) -> list[tuple[float, SseEvent]]:
    async with api.stream("POST", f"{SMOKE}/instances/{instance_id}/chat", json={"message": message}) as response:
        assert response.status_code == 200
        return await read_events(response)


@pytest.mark.slow
async def test_events_are_relayed_as_they_arrive_and_equal_the_agents(
    api: httpx.AsyncClient, cloud: httpx.AsyncClient, cloud_url: str, settings: Settings
) -> None:
    instance_id = await running_instance(api)
    await cloud.put("/_sim/faults", json={"agent": {"token_delay_ms": 200}})

    relayed = await chat(api, instance_id, TEN_WORDS)

    deltas = [at for at, event in relayed if event.event == "delta"]
    assert len(deltas) == 10
    assert deltas[-1] - deltas[0] > 1.5  # the first word arrived while the agent was still producing the rest
    direct = await _chat_directly(cloud_url, await _server_id(cloud), settings, uuid.UUID(instance_id), TEN_WORDS)
    assert [event for _, event in relayed] == [event for _, event in direct]


async def test_after_done_llm_events_counts_the_turn(api: httpx.AsyncClient) -> None:
    instance_id = await running_instance(api)

    events = await chat(api, instance_id, "hello there")

    assert events[-1][1].event == "done"
    counted = (await api.get(f"{SMOKE}/instances/{instance_id}/llm-events")).json()
    assert (counted["count"], counted["providers"]) == (1, ["simulated"])


async def test_the_same_usage_report_sent_concurrently_is_counted_once(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    instance_id = await running_instance(api)
    token = HmacTokenIssuer(settings.agent_token_secret or "").agent_token(uuid.UUID(instance_id)).token
    report = {"request_id": "r-1", "provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 2}

    answers = await asyncio.gather(
        *(
            api.post("/internal/v1/agent/usage-events", json=report, headers={"Authorization": f"Bearer {token}"})
            for _ in range(10)
        )
    )

    assert sorted(a.json()["recorded"] for a in answers) == [False] * 9 + [True]
    assert (await api.get(f"{SMOKE}/instances/{instance_id}/llm-events")).json()["count"] == 1


async def test_an_agent_that_is_down_is_a_json_502(api: httpx.AsyncClient, cloud: httpx.AsyncClient) -> None:
    instance_id = await running_instance(api)
    await cloud.put("/_sim/faults", json={"agent": {"down": True}})

    response = await api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "hi"})

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")


async def test_an_agent_failing_mid_stream_ends_the_stream_with_an_error_event(
    api: httpx.AsyncClient, cloud: httpx.AsyncClient
) -> None:
    instance_id = await running_instance(api)
    await cloud.put("/_sim/faults", json={"agent": {"fail_mid_stream_ratio": 1.0}})

    events = [event for _, event in await chat(api, instance_id, "a b c")]

    assert [e.event for e in events] == ["delta", "error"]
    assert events[-1].data.startswith('{"detail":')


async def test_a_deleted_instance_cannot_be_chatted_with(api: httpx.AsyncClient) -> None:
    instance_id = await running_instance(api)
    await api.delete(f"{SMOKE}/instances/{instance_id}")

    response = await api.post(f"{SMOKE}/instances/{instance_id}/chat", json={"message": "hi"})

    assert response.status_code == 409


@pytest.mark.slow
async def test_a_client_leaving_closes_the_upstream_within_a_second_and_leaks_nothing(
    api: httpx.AsyncClient, cloud: httpx.AsyncClient, clean_database: str
) -> None:
    instance_id = await running_instance(api)
    await cloud.put("/_sim/faults", json={"agent": {"token_delay_ms": 100}})
    await chat(api, instance_id, "warm up")
    tasks_before, connections_before = len(asyncio.all_tasks()), await _database_connections(clean_database)

    left_at = []
    for _ in range(50):
        async with api.stream("POST", f"{SMOKE}/instances/{instance_id}/chat", json={"message": TEN_WORDS}) as r:
            async for _chunk in r.aiter_raw():
                break  # the first event arrived: leave
        left_at.append(time.time())

    async def all_ended() -> list[dict[str, Any]] | None:
        chats = (await cloud.get("/_sim/state")).json()["chats"][-50:]
        return chats if all(c["ended_at"] is not None for c in chats) else None

    chats = await until(all_ended, timeout=10)
    assert max(c["ended_at"] - left for c, left in zip(chats, left_at, strict=True)) < 1.0
    assert all(c["client_disconnected"] for c in chats)
    await asyncio.sleep(0.5)
    assert len(asyncio.all_tasks()) <= tasks_before
    assert await _database_connections(clean_database) <= connections_before


@pytest.mark.slow
async def test_upstream_silence_is_bridged_with_keep_alive_comments(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> None:
    async with serving_api(settings, cloud_url, sse_keepalive_seconds=0.2) as api:
        instance_id = await running_instance(api)
        await cloud.put("/_sim/faults", json={"agent": {"token_delay_ms": 700}})

        async with api.stream("POST", f"{SMOKE}/instances/{instance_id}/chat", json={"message": "a b"}) as r:
            body = b"".join([chunk async for chunk in r.aiter_raw()])

    assert body.count(b": keep-alive\n\n") >= 2
    assert b"event: done" in body


@pytest.mark.slow
async def test_a_turn_past_its_timeout_ends_with_an_error_event(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> None:
    async with serving_api(settings, cloud_url, chat_turn_timeout_seconds=1) as api:
        instance_id = await running_instance(api)
        await cloud.put("/_sim/faults", json={"agent": {"token_delay_ms": 400}})

        events = [event for _, event in await chat(api, instance_id, TEN_WORDS)]

    assert events[-1].event == "error"
    assert "longer than 1 s" in events[-1].data
    assert 2 <= len(events) <= 5


async def _server_id(cloud: httpx.AsyncClient) -> int:
    [server] = await servers(cloud)
    return int(server["id"])


async def _chat_directly(
    cloud_url: str, server_id: int, settings: Settings, instance_id: uuid.UUID, message: str
) -> list[tuple[float, SseEvent]]:
    token = HmacTokenIssuer(settings.agent_token_secret or "").agent_token(instance_id).token
    async with (
        httpx.AsyncClient(base_url=cloud_url) as agent,
        agent.stream(
            "POST",
            f"/agents/{server_id}/v1/chat",
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return await read_events(response)


async def _database_connections(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"))
    finally:
        await conn.close()
