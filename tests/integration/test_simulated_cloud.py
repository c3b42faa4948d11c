"""The simulated cloud over real HTTP on loopback: the official hcloud client, raw httpx, agents and faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import CreateServerResponse

from smoke.serving import serve_asgi
from smoke.simulators import create_cloud_simulator
from smoke.simulators.agent.user_data import parse_agent_config
from smoke.simulators.hetzner.rate_limit import TokenBucket
from tests.typed import present

TOKEN = "sim-token"
AGENT_TOKEN = "agent-secret-1"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UsageReceiver:
    """A stand-in for the control plane's usage endpoint: records each call, answers ``status``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.status = 200

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body, more_body = b"", True
        while more_body:
            message = await receive()
            body, more_body = body + message.get("body", b""), message.get("more_body", False)
        self.calls.append((dict(scope["headers"])[b"authorization"].decode(), json.loads(body)))
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
async def cloud_url(clock: ManualClock) -> AsyncIterator[str]:
    """A simulator whose time only moves when a test says so (chat pauses are real: 1 ms)."""
    app = create_cloud_simulator(action_seconds=1.0, boot_seconds=1.0, token_delay_ms=1, seed=7, clock=clock)
    async with serve_asgi(app) as url:
        yield url


@pytest.fixture
async def sim(cloud_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the simulator, which it resets first: every test starts from an empty cloud."""
    async with httpx.AsyncClient(base_url=cloud_url) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


@pytest.fixture
async def api(cloud_url: str, sim: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``/v1`` with the right token (after ``sim`` has reset the simulator)."""
    async with httpx.AsyncClient(base_url=f"{cloud_url}/v1", headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture(scope="module")
async def usage_receiver() -> AsyncIterator[tuple[UsageReceiver, str]]:
    receiver = UsageReceiver()
    async with serve_asgi(receiver, lifespan="off") as url:
        yield receiver, f"{url}/internal/v1/agent/usage-events"


@pytest.fixture
def usage(usage_receiver: tuple[UsageReceiver, str]) -> tuple[UsageReceiver, str]:
    """The usage receiver, with no calls yet and answering 200, and its URL."""
    receiver, _ = usage_receiver
    receiver.calls.clear()
    receiver.status = 200
    return usage_receiver


@pytest.fixture(scope="module")
async def real_time_cloud_url() -> AsyncIterator[str]:
    async with serve_asgi(create_cloud_simulator(action_seconds=0.05, boot_seconds=0.05)) as url:
        yield url


@pytest.fixture
async def hcloud(real_time_cloud_url: str) -> Client:
    """The official client against a reset simulator running on real time, with short actions."""
    async with httpx.AsyncClient(base_url=real_time_cloud_url) as control:
        (await control.post("/_sim/reset")).raise_for_status()
    return Client(token=TOKEN, api_endpoint=f"{real_time_cloud_url}/v1", poll_interval=0.02)


def server_body(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "server_type": "cpx22", "image": "ubuntu-24.04", "location": "fsn1", **fields}


def cloud_config(usage_url: str) -> str:
    config = {
        "instance_id": "inst-1",
        "agent_token": AGENT_TOKEN,
        "usage_url": usage_url,
        "manifest_id": "agent-default",
    }
    return (
        "#cloud-config\n"
        "write_files:\n"
        "  - path: /etc/smoke-agent/config.json\n"
        "    permissions: '0600'\n"
        f"    content: '{json.dumps(config)}'\n"
    )


async def running_agent(api: httpx.AsyncClient, clock: ManualClock, usage_url: str) -> str:
    """Create a server carrying an agent configuration, let it run and boot; return the agent's path."""
    response = await api.post("/servers", json=server_body("agent-1", user_data=cloud_config(usage_url)))
    clock.advance(3.0)
    return f"/agents/{response.json()['server']['id']}"


async def stream_chat_lines(sim: httpx.AsyncClient, agent: str, message: str, *, into: list[str]) -> None:
    """Stream a chat, appending each line of the body to ``into`` as it arrives."""
    async with sim.stream("POST", f"{agent}/v1/chat", json={"message": message}, headers=bearer(AGENT_TOKEN)) as r:
        async for line in r.aiter_lines():
            into.append(line)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def set_faults(sim: httpx.AsyncClient, **sections: dict[str, Any]) -> dict[str, Any]:
    response = await sim.put("/_sim/faults", json=sections)
    assert response.status_code == 200, response.text
    faults: dict[str, Any] = response.json()
    return faults


async def sim_state(sim: httpx.AsyncClient) -> dict[str, Any]:
    state: dict[str, Any] = (await sim.get("/_sim/state")).json()
    return state


# --- the official hcloud client -------------------------------------------------------------------------------


def create_with_hcloud(client: Client, name: str, labels: dict[str, str]) -> CreateServerResponse:
    return client.servers.create(
        name=name,
        server_type=ServerType(name="cpx22"),
        image=Image(name="ubuntu-24.04"),
        location=Location(name="fsn1"),
        labels=labels,
    )


async def test_hcloud_creates_a_server_that_runs_once_its_actions_finish(hcloud: Client) -> None:
    created = await asyncio.to_thread(create_with_hcloud, hcloud, "web-1", {"app": "demo"})
    await asyncio.to_thread(created.action.wait_until_finished)
    for action in created.next_actions:
        await asyncio.to_thread(action.wait_until_finished)

    server = await asyncio.to_thread(hcloud.servers.get_by_id, present(created.server.id))

    assert created.server.status == "initializing"
    assert created.root_password
    assert server.status == "running"
    assert present(present(server.public_net).ipv4).ip.startswith("203.0.113.")
    assert server.labels == {"app": "demo"}


async def test_hcloud_lists_servers_by_label_selector_and_finds_one_by_name(hcloud: Client) -> None:
    for name, labels in [("a-1", {"env": "prod"}), ("b-1", {"env": "test", "db": ""}), ("c-1", {"env": "dev"})]:
        await asyncio.to_thread(create_with_hcloud, hcloud, name, labels)

    def names(selector: str) -> list[str | None]:
        return [server.name for server in hcloud.servers.get_all(label_selector=selector)]

    assert await asyncio.to_thread(names, "env in (prod,test)") == ["a-1", "b-1"]
    assert await asyncio.to_thread(names, "env!=prod,!db") == ["c-1"]
    assert await asyncio.to_thread(names, "db") == ["b-1"]
    assert present(await asyncio.to_thread(hcloud.servers.get_by_name, "b-1")).labels == {"env": "test", "db": ""}
    assert await asyncio.to_thread(hcloud.servers.get_by_name, "zzz") is None


async def test_hcloud_gets_uniqueness_error_for_a_name_in_use(hcloud: Client) -> None:
    await asyncio.to_thread(create_with_hcloud, hcloud, "web-1", {})

    with pytest.raises(APIException) as raised:
        await asyncio.to_thread(create_with_hcloud, hcloud, "web-1", {})

    assert raised.value.code == "uniqueness_error"
    assert raised.value.details == {"fields": [{"name": "name"}]}


async def test_hcloud_deletes_a_server_which_is_then_not_found(hcloud: Client) -> None:
    created = await asyncio.to_thread(create_with_hcloud, hcloud, "web-1", {})
    deletion = await asyncio.to_thread(hcloud.servers.delete, created.server)
    await asyncio.to_thread(deletion.wait_until_finished)

    with pytest.raises(APIException) as raised:
        await asyncio.to_thread(hcloud.servers.get_by_id, present(created.server.id))

    assert deletion.command == "delete_server"
    assert raised.value.code == "not_found"


# --- the Hetzner API over httpx -------------------------------------------------------------------------------


async def test_a_bad_token_is_401_unauthorized_in_the_error_envelope(sim: httpx.AsyncClient) -> None:
    response = await sim.get("/v1/servers", headers=bearer("wrong"))

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": None}}


@pytest.mark.parametrize("path", ["/servers/999999", "/actions/999999", "/no/such/route"])
async def test_unknown_ids_and_routes_are_404_not_found(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


async def test_a_wrong_method_is_405_and_malformed_json_400(api: httpx.AsyncClient) -> None:
    wrong_method = await api.put("/servers")
    malformed = await api.post("/servers", content=b"{not json", headers={"Content-Type": "application/json"})

    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "json_error")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "not_a_hostname"}, "name"),
        ({"location": "xyz"}, "location"),
        ({"server_type": "cx11"}, "server_type"),
        ({"image": "windows-95"}, "image"),
        ({"server_type": "cx23", "location": "ash"}, "server_type"),
        ({"labels": {"bad key": "v"}}, "labels"),
        ({"user_data": "x" * (32 * 1024 + 1)}, "user_data"),
        ({"start_after_create": "yes"}, "start_after_create"),
    ],
)
async def test_invalid_create_input_is_422_naming_the_field(
    api: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    response = await api.post("/servers", json=server_body("web-1") | fields)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["details"]["fields"][0]["name"] == field


async def test_a_malformed_label_selector_is_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/servers", params={"label_selector": "env in (a,b"})

    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_input")


async def test_a_name_in_use_is_409_uniqueness_error(api: httpx.AsyncClient) -> None:
    await api.post("/servers", json=server_body("web-1"))

    response = await api.post("/servers", json=server_body("web-1"))

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "uniqueness_error",
        "message": "server name is already used",
        "details": {"fields": [{"name": "name"}]},
    }


async def test_the_name_is_free_again_once_the_delete_finished(api: httpx.AsyncClient, clock: ManualClock) -> None:
    server_id = (await api.post("/servers", json=server_body("web-1"))).json()["server"]["id"]
    await api.delete(f"/servers/{server_id}")
    status_while_deleting = (await api.get(f"/servers/{server_id}")).json()["server"]["status"]
    taken = await api.post("/servers", json=server_body("web-1"))
    clock.advance(1.0)

    assert status_while_deleting == "deleting"
    assert taken.status_code == 409
    assert (await api.get(f"/servers/{server_id}")).status_code == 404
    assert (await api.post("/servers", json=server_body("web-1"))).status_code == 201


async def test_pagination_meta_over_sixty_servers(api: httpx.AsyncClient) -> None:
    await asyncio.gather(*(api.post("/servers", json=server_body(f"web-{n:02d}")) for n in range(60)))

    first = (await api.get("/servers")).json()
    last = (await api.get("/servers", params={"page": 3})).json()
    clamped = (await api.get("/servers", params={"per_page": 500, "sort": "name:desc"})).json()

    assert len(first["servers"]) == 25
    assert first["meta"]["pagination"] == {
        "page": 1, "per_page": 25, "previous_page": None, "next_page": 2, "last_page": 3, "total_entries": 60,
    }  # fmt: skip
    assert len(last["servers"]) == 10
    assert last["meta"]["pagination"] == {
        "page": 3, "per_page": 25, "previous_page": 2, "next_page": None, "last_page": 3, "total_entries": 60,
    }  # fmt: skip
    assert clamped["meta"]["pagination"]["per_page"] == 50
    assert clamped["servers"][0]["name"] == "web-59"


async def test_every_answer_carries_rate_limit_headers_and_a_correlation_id(api: httpx.AsyncClient) -> None:
    first = await api.get("/servers")
    second = await api.get("/servers/424242")

    assert first.headers["RateLimit-Limit"] == "3600"
    assert int(second.headers["RateLimit-Remaining"]) == int(first.headers["RateLimit-Remaining"]) - 1
    assert int(second.headers["RateLimit-Reset"]) >= int(first.headers["RateLimit-Reset"])
    assert first.headers["X-Correlation-Id"] != second.headers["X-Correlation-Id"]


def test_the_rate_limit_bucket_holds_3600_requests_and_refills_one_per_second() -> None:
    bucket = TokenBucket(now=0.0)

    assert all(bucket.take(now=0.0) for _ in range(3600))
    assert not bucket.take(now=0.5)
    assert bucket.take(now=1.0)


async def test_actions_are_readable_by_every_action_endpoint(api: httpx.AsyncClient, clock: ManualClock) -> None:
    created = (await api.post("/servers", json=server_body("web-1"))).json()
    server_id, create_id, start_id = created["server"]["id"], created["action"]["id"], created["next_actions"][0]["id"]
    clock.advance(2.0)

    by_ids = (await api.get("/actions", params=[("id", create_id), ("id", start_id), ("id", 999999)])).json()
    scoped = (await api.get(f"/servers/{server_id}/actions/{start_id}")).json()
    listed = (await api.get(f"/servers/{server_id}/actions", params={"sort": "id:desc"})).json()

    assert [a["status"] for a in by_ids["actions"]] == ["success", "success"]
    assert scoped == (await api.get(f"/servers/actions/{start_id}")).json()
    assert scoped["action"]["command"] == "start_server"
    assert [a["id"] for a in listed["actions"]] == [start_id, create_id]


async def test_the_catalogue_offers_cx_types_only_in_europe(api: httpx.AsyncClient) -> None:
    cx23 = (await api.get("/server_types", params={"name": "cx23"})).json()["server_types"]
    locations = (await api.get("/locations")).json()["locations"]
    images = (await api.get("/images", params={"name": "debian-12"})).json()["images"]

    assert [loc["name"] for loc in cx23[0]["locations"]] == ["fsn1", "nbg1", "hel1"]
    assert [loc["name"] for loc in locations] == ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
    assert images[0]["os_flavor"] == "debian"


async def test_a_server_is_off_then_starting_then_running_on_the_clock(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    unstarted = (await api.post("/servers", json=server_body("off-1", start_after_create=False))).json()
    started = (await api.post("/servers", json=server_body("web-1"))).json()

    async def status(created: dict[str, Any]) -> str:
        body = (await api.get(f"/servers/{created['server']['id']}")).json()
        return str(body["server"]["status"])

    clock.advance(1.0)
    assert (await status(unstarted), await status(started)) == ("off", "starting")
    clock.advance(1.0)
    assert await status(started) == "running"
    assert "datacenter" not in (await api.get(f"/servers/{started['server']['id']}")).json()["server"]


# --- Hetzner faults -------------------------------------------------------------------------------------------


async def test_rate_limit_ratio_answers_429_with_the_headers_of_an_empty_bucket(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock
) -> None:
    await set_faults(sim, hetzner={"rate_limit_ratio": 1})

    response = await api.get("/servers")

    assert (response.status_code, response.json()["error"]["code"]) == (429, "rate_limit_exceeded")
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == str(int(clock.now) + 3600)


async def test_error_ratio_answers_a_retryable_error_and_changes_nothing(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    await set_faults(sim, hetzner={"error_ratio": 1})

    responses = [await api.post("/servers", json=server_body(f"web-{n}")) for n in range(10)]

    assert {(r.status_code, r.json()["error"]["code"]) for r in responses} <= {
        (409, "conflict"), (502, "bad_gateway"), (504, "timeout"),
    }  # fmt: skip
    assert (await sim_state(sim))["servers"] == []


async def test_a_dropped_create_response_still_creates_the_server(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    await set_faults(sim, hetzner={"drop_create_response_ratio": 1})

    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("/servers", json=server_body("web-1"))

    assert [server["name"] for server in (await sim_state(sim))["servers"]] == ["web-1"]


async def test_action_error_ratio_fails_the_actions_and_leaves_the_server_off(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock
) -> None:
    await set_faults(sim, hetzner={"action_error_ratio": 1})
    created = (await api.post("/servers", json=server_body("web-1"))).json()
    clock.advance(1.0)

    create = (await api.get(f"/actions/{created['action']['id']}")).json()["action"]
    start = (await api.get(f"/actions/{created['next_actions'][0]['id']}")).json()["action"]

    assert (create["status"], start["status"]) == ("error", "error")
    assert create["error"] == {"code": "action_failed", "message": "Action failed"}
    assert (await api.get(f"/servers/{created['server']['id']}")).json()["server"]["status"] == "off"


async def test_latency_delays_every_answer(api: httpx.AsyncClient, sim: httpx.AsyncClient) -> None:
    await set_faults(sim, hetzner={"latency_ms": 100})

    started = time.monotonic()
    await api.get("/servers")

    assert time.monotonic() - started >= 0.1


# --- control API ----------------------------------------------------------------------------------------------


async def test_faults_accept_any_subset_and_refuse_unknown_knobs(sim: httpx.AsyncClient) -> None:
    faults = await set_faults(sim, agent={"down": True})
    unknown = await sim.put("/_sim/faults", json={"hetzner": {"explode": 1}})
    out_of_range = await sim.put("/_sim/faults", json={"hetzner": {"error_ratio": 2}})

    assert faults["agent"] == {"token_delay_ms": 1, "down": True, "fail_mid_stream_ratio": 0.0}
    assert faults["hetzner"]["error_ratio"] == 0.0
    assert (unknown.status_code, out_of_range.status_code) == (422, 422)


async def test_state_counts_requests_per_route_and_reset_empties_everything(
    api: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    server_id = (await api.post("/servers", json=server_body("web-1"))).json()["server"]["id"]
    await api.get(f"/servers/{server_id}")
    await set_faults(sim, agent={"down": True})
    before = await sim_state(sim)

    after = (await sim.post("/_sim/reset")).json()

    assert before["requests"] == {"POST /v1/servers": 1, "GET /v1/servers/{id}": 1}
    assert before["servers"] == [
        {"id": server_id, "name": "web-1", "status": "initializing", "labels": {}, "location": "fsn1",
         "server_type": "cpx22", "image": "ubuntu-24.04", "ipv4": "203.0.113.1", "created": ANY,
         "agent": {"mode": "inline", "pid": None, "root": None}},
    ]  # fmt: skip
    assert after == {"servers": [], "requests": {}, "chats": []}
    assert (await set_faults(sim))["agent"]["down"] is False


# --- virtual agents -------------------------------------------------------------------------------------------


async def test_healthz_answers_once_the_server_runs_and_has_booted(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock
) -> None:
    server_id = (await api.post("/servers", json=server_body("web-1"))).json()["server"]["id"]

    async def healthz() -> int:
        return (await sim.get(f"/agents/{server_id}/healthz")).status_code

    clock.advance(2.0)
    assert await healthz() == 503
    clock.advance(1.0)
    assert await healthz() == 200
    assert (await sim.get("/agents/999999/healthz")).status_code == 404


async def test_chat_echoes_word_by_word_and_reports_usage_before_done(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    receiver, usage_url = usage
    agent = await running_agent(api, clock, usage_url)

    response = await sim.post(f"{agent}/v1/chat", json={"message": "hello big world"}, headers=bearer(AGENT_TOKEN))

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == (
        'event: delta\nid: 1\ndata: {"text": "hello"}\n\n'
        'event: delta\nid: 2\ndata: {"text": " big"}\n\n'
        'event: delta\nid: 3\ndata: {"text": " world"}\n\n'
        'event: done\nid: 4\ndata: {"usage": {"provider": "simulated", "model": "echo-1", '
        '"input_tokens": 3, "output_tokens": 3}}\n\n'
    )
    [(authorization, body)] = receiver.calls
    assert authorization == f"Bearer {AGENT_TOKEN}"
    assert body.pop("request_id")
    assert body == {"provider": "simulated", "model": "echo-1", "input_tokens": 3, "output_tokens": 3}


async def test_chat_ends_with_an_error_event_when_the_usage_report_fails(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    receiver, usage_url = usage
    receiver.status = 401
    agent = await running_agent(api, clock, usage_url)

    response = await sim.post(f"{agent}/v1/chat", json={"message": "hi"}, headers=bearer(AGENT_TOKEN))

    assert response.text.endswith('event: error\nid: 2\ndata: {"detail": "usage report failed: HTTP 401"}\n\n')
    assert (await sim_state(sim))["chats"][0]["outcome"] == "usage_report_failed"


async def test_chat_refuses_a_wrong_agent_token(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    agent = await running_agent(api, clock, usage[1])

    response = await sim.post(f"{agent}/v1/chat", json={"message": "hi"}, headers=bearer("not-the-token"))

    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


async def test_a_down_agent_answers_503_everywhere(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    agent = await running_agent(api, clock, usage[1])
    await set_faults(sim, agent={"down": True})

    health = await sim.get(f"{agent}/healthz")
    chat = await sim.post(f"{agent}/v1/chat", json={"message": "hi"}, headers=bearer(AGENT_TOKEN))

    assert (health.status_code, chat.status_code) == (503, 503)


async def test_fail_mid_stream_cuts_the_connection_after_the_first_delta(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    agent = await running_agent(api, clock, usage[1])
    await set_faults(sim, agent={"fail_mid_stream_ratio": 1})
    lines: list[str] = []

    with pytest.raises(httpx.RemoteProtocolError):
        await stream_chat_lines(sim, agent, "a b c", into=lines)

    assert lines == ["event: delta", "id: 1", 'data: {"text": "a"}', ""]
    assert usage[0].calls == []


async def test_a_client_that_leaves_mid_stream_ends_the_chat_within_a_second(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, clock: ManualClock, usage: tuple[UsageReceiver, str]
) -> None:
    agent = await running_agent(api, clock, usage[1])
    await set_faults(sim, agent={"token_delay_ms": 5000})
    async with sim.stream("POST", f"{agent}/v1/chat", json={"message": "a b"}, headers=bearer(AGENT_TOKEN)) as r:
        async for _ in r.aiter_lines():
            break

    async with asyncio.timeout(1.0):
        while (chat := (await sim_state(sim))["chats"][0])["ended_at"] is None:
            await asyncio.sleep(0.01)

    assert chat["client_disconnected"] is True
    assert usage[0].calls == []


# --- cloud-init user data -------------------------------------------------------------------------------------


@pytest.fixture
def config_json() -> str:
    return json.dumps({"instance_id": "i", "agent_token": "it's", "usage_url": "http://u", "manifest_id": "m"})


def test_user_data_content_may_be_a_single_quoted_scalar_with_doubled_quotes(config_json: str) -> None:
    quoted = config_json.replace("'", "''")
    user_data = (
        f"#cloud-config\nwrite_files:\n- path: /etc/smoke-agent/config.json\n  content: '{quoted}'\nruncmd: []\n"
    )

    config = parse_agent_config(user_data)

    assert config is not None
    assert config.agent_token == "it's"


def test_user_data_content_may_be_a_literal_block(config_json: str) -> None:
    user_data = (
        "#cloud-config\nwrite_files:\n  - path: /etc/other\n    content: x\n"
        "  - content: |\n      " + config_json + "\n    path: /etc/smoke-agent/config.json\n"
    )

    config = parse_agent_config(user_data)

    assert config is not None
    assert config.usage_url == "http://u"
    assert parse_agent_config(user_data.replace("#cloud-config", "#!/bin/sh")) is None
