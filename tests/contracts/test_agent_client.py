"""AgentClient: the fake and HttpAgentClient over loopback to a simulated agent, one suite.

The simulated agent is the inline echo agent, or the reference agent run as a process from the server's user data
(``agents="process"``): both answer the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from smoke.adapters.agent import HttpAgentClient, agent_session
from smoke.adapters.user_data import CloudInitUserData
from smoke.domain.errors import AgentUnavailable
from smoke.domain.models import AgentBoot, ChatEvent, Instance, Manifest
from smoke.domain.ports import AgentClient
from smoke.serving import serve_asgi
from smoke.simulators import create_cloud_simulator
from smoke.testing import FakeAgentClient

TOKEN = "agent-token-for-the-contract"
REPLY = [
    ChatEvent("delta", '{"text": "ping"}', "1"),
    ChatEvent("delta", '{"text": " pong"}', "2"),
]


@dataclass
class Agent:
    client: AgentClient
    base_url: str
    down_url: str


@pytest.fixture(params=["fake", "http-inline", "http-process"])
async def agent(request: pytest.FixtureRequest) -> AsyncIterator[Agent]:
    if request.param == "fake":
        fake = FakeAgentClient(reply=[*REPLY, ChatEvent("done", "{}", "3")])
        fake.down.add("http://down.test")
        yield Agent(fake, "http://agent.test", "http://down.test")
        return
    agents = request.param.removeprefix("http-")
    simulator = create_cloud_simulator(action_seconds=0, boot_seconds=0, token_delay_ms=0, agents=agents)
    async with (
        serve_asgi(simulator) as url,
        serve_asgi(_usage_receiver, lifespan="off") as usage_url,
        httpx.AsyncClient(timeout=10) as http,
        agent_session(connect=5, read=10) as session,
    ):
        server_id = await _booted_server(http, url, usage_url)
        yield Agent(HttpAgentClient(session), f"{url}/agents/{server_id}", f"{url}/agents/999999")


async def test_a_booted_agent_is_healthy_and_an_absent_one_is_not(agent: Agent) -> None:
    assert await agent.client.is_healthy(agent.base_url) is True
    assert await agent.client.is_healthy(agent.down_url) is False


async def test_a_chat_turn_streams_its_events_and_ends_with_done(agent: Agent) -> None:
    stream = await agent.client.open_chat(agent.base_url, TOKEN, "ping pong")

    events = [event async for event in stream]

    assert events[:2] == REPLY
    assert events[-1].event == "done"


async def test_an_unreachable_agent_refuses_before_any_event(agent: Agent) -> None:
    with pytest.raises(AgentUnavailable):
        await agent.client.open_chat(agent.down_url, TOKEN, "hi")


async def test_closing_a_turn_early_is_safe_and_idempotent(agent: Agent) -> None:
    stream = await agent.client.open_chat(agent.base_url, TOKEN, "ping pong")

    await stream.aclose()
    await stream.aclose()


async def _usage_receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts every usage report, as the smoke API does for a known agent."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"recorded": true}'})


async def _booted_server(http: httpx.AsyncClient, url: str, usage_url: str) -> int:
    instance_id = uuid.uuid4()
    boot = AgentBoot(instance_id, TOKEN, usage_url, Manifest("agent-default", "ubuntu-24.04"))
    body = {
        "name": Instance.hostname_for(instance_id),
        "server_type": "cpx22",
        "image": "ubuntu-24.04",
        "location": "fsn1",
        "user_data": CloudInitUserData().render(boot),
    }
    created = await http.post(f"{url}/v1/servers", json=body, headers={"Authorization": "Bearer sim-token"})
    server_id = int(created.json()["server"]["id"])
    deadline = time.monotonic() + 10  # a process agent answers once its interpreter has started
    while (await http.get(f"{url}/agents/{server_id}/healthz")).status_code != 200:
        assert time.monotonic() < deadline, "the agent never answered /healthz"
        await asyncio.sleep(0.02)
    return server_id
