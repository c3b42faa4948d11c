"""The agents of ``smoke simulate-cloud``: one contract for ``--agents inline`` and ``--agents process``, then what
``--agents process`` does that the inline agents do not (run the user data, end the process with the server).

The simulator runs as users run it, a process of its own (uvloop); the usage endpoint and the fake LLM are servers
in threads of the test process. Process agents are looked at from outside: ``/_sim/state``, ``/proc`` (psutil) and
the files under each server's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
import pytest
import yaml

from smoke.adapters.cloud_init import AGENT_PATH, AGENT_UNIT, cloud_config
from smoke.serving import serve_asgi
from smoke.simulators import create_cloud_simulator
from smoke.sse import SseParser
from tests.agent.support import FakeLlm, fake_llm, file_content, serving, written_files
from tests.simulator.conftest import SimulatedCloud, simulated_cloud_process

AUTH = {"Authorization": "Bearer sim-token"}
AGENT_TOKEN = "agent-token-of-the-contract"
QUICK = ("--action-seconds", "0.05", "--boot-seconds", "0.05", "--token-delay-ms", "1")
UNIT_PATH = f"/etc/systemd/system/{AGENT_UNIT}"


# --- the usage endpoint: records each report, and can hold its answer ------------------------------------------


@dataclass
class UsageEndpoint:
    reports: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.release.set()

    def hold(self) -> None:
        """Answer the next reports only once :meth:`release` is set."""
        self.received.clear()
        self.release.clear()


class _UsageHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        endpoint: UsageEndpoint = self.server.state  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        endpoint.reports.append((self.headers.get("Authorization"), body))
        endpoint.received.set()
        endpoint.release.wait(timeout=10)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def usage() -> Iterator[tuple[str, UsageEndpoint]]:
    endpoint = UsageEndpoint()
    with serving(_UsageHandler, endpoint) as url:
        yield f"{url}/internal/v1/agent/usage-events", endpoint


# --- the simulators ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clouds() -> Iterator[Callable[[str], SimulatedCloud]]:
    """``smoke simulate-cloud --agents <mode>``, one per mode, started when first asked for, stopped at the end."""
    started: dict[str, SimulatedCloud] = {}
    with contextlib.ExitStack() as stack:

        def cloud(mode: str) -> SimulatedCloud:
            if mode not in started:
                started[mode] = stack.enter_context(simulated_cloud_process("--agents", mode, *QUICK))
            return started[mode]

        yield cloud


@pytest.fixture(params=["inline", "process"])
def cloud(request: pytest.FixtureRequest, clouds: Callable[[str], SimulatedCloud]) -> SimulatedCloud:
    simulated = clouds(request.param)
    simulated.reset()
    return simulated


@pytest.fixture
def process_cloud(clouds: Callable[[str], SimulatedCloud]) -> SimulatedCloud:
    simulated = clouds("process")
    simulated.reset()
    return simulated


def user_data(
    usage_url: str, *, agent: Literal["reference", "image"] = "reference", llm: dict[str, str] | None = None
) -> str:
    config: dict[str, Any] = {
        "instance_id": str(uuid.uuid4()),
        "agent_token": AGENT_TOKEN,
        "usage_url": usage_url,
        "manifest_id": "agent-default",
    }
    if llm is not None:
        config["llm"] = llm
    return cloud_config(agent_config=config, agent=agent, agent_port=8080, extra_user_data=None)


def with_changes(data: str, *, unit: str | None = None, runcmd: list[Any] | None = None) -> str:
    """``data`` with its unit file's content and/or its ``runcmd`` replaced."""
    document = yaml.safe_load(data)
    if unit is not None:
        for item in document["write_files"]:
            if item["path"] == UNIT_PATH:
                item["content"] = unit
    if runcmd is not None:
        document["runcmd"] = runcmd
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


def create_server(cloud: SimulatedCloud, data: str | None) -> int:
    body = {"name": f"s-{uuid.uuid4().hex[:12]}", "server_type": "cpx22", "image": "ubuntu-24.04", "user_data": data}
    response = cloud.control.post("/v1/servers", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return int(response.json()["server"]["id"])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError(f"{what} did not hold within {timeout} s")


def healthz(cloud: SimulatedCloud, server_id: int) -> httpx.Response:
    return cloud.control.get(f"/agents/{server_id}/healthz")


def wait_healthy(cloud: SimulatedCloud, server_id: int) -> None:
    wait_for(lambda: healthz(cloud, server_id).status_code == 200, what=f"server {server_id}'s /healthz 200")


def agent_of(cloud: SimulatedCloud, server_id: int) -> dict[str, Any]:
    (server,) = [server for server in cloud.servers() if server["id"] == server_id]
    agent: dict[str, Any] = server["agent"]
    return agent


def booted(cloud: SimulatedCloud, data: str | None) -> int:
    server_id = create_server(cloud, data)
    wait_for(lambda: agent_of(cloud, server_id)["state"] != "waiting", what="the boot")
    return server_id


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def power(cloud: SimulatedCloud, server_id: int, action: str) -> None:
    response = cloud.control.post(f"/v1/servers/{server_id}/actions/{action}", headers=AUTH)
    assert response.status_code == 201, response.text


@dataclass
class Event:
    event: str
    data: dict[str, Any]


def chat_events(cloud: SimulatedCloud, server_id: int, message: str, into: queue.Queue[Event | None]) -> None:
    """Stream one turn into ``into``, each event as it arrives, then None."""
    parser = SseParser()
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    url = f"/agents/{server_id}/v1/chat"
    try:
        with cloud.control.stream("POST", url, json={"message": message}, headers=headers, timeout=20) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for chunk in response.iter_raw():
                for event in parser.feed(chunk):
                    into.put(Event(event.event, json.loads(event.data)))
    finally:
        into.put(None)


def read_turn(cloud: SimulatedCloud, server_id: int, message: str, into: list[bytes]) -> None:
    """Read one turn's raw body into ``into``, chunk by chunk."""
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    with cloud.control.stream("POST", f"/agents/{server_id}/v1/chat", json={"message": message}, headers=headers) as r:
        into.extend(r.iter_raw())


# --- one contract, both modes -----------------------------------------------------------------------------------


def test_healthz_answers_503_until_the_server_has_booted_then_200(
    cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = create_server(cloud, user_data(usage[0]))

    first = healthz(cloud, server_id)
    wait_healthy(cloud, server_id)

    assert first.status_code == 503
    assert healthz(cloud, server_id).json() == {"status": "ok"}
    assert healthz(cloud, 999_999_999).status_code == 404


def test_a_turn_streams_deltas_then_done_only_after_usage_was_reported_with_the_token(
    cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    usage_url, endpoint = usage
    server_id = create_server(cloud, user_data(usage_url))
    wait_healthy(cloud, server_id)
    events: queue.Queue[Event | None] = queue.Queue()
    endpoint.reports.clear()
    endpoint.hold()

    reader = threading.Thread(target=chat_events, args=(cloud, server_id, "one two three", events), daemon=True)
    reader.start()
    deltas = [events.get(timeout=10) for _ in range(3)]
    assert endpoint.received.wait(timeout=10), "the agent never reported the turn's usage"
    time.sleep(0.3)
    held_back = events.empty()
    endpoint.release.set()
    done = events.get(timeout=10)
    reader.join(timeout=10)

    assert [(e.event, e.data) if e else None for e in deltas] == [
        ("delta", {"text": "one"}),
        ("delta", {"text": " two"}),
        ("delta", {"text": " three"}),
    ]
    assert held_back, "done came before the usage endpoint answered"
    assert done is not None
    assert done.event == "done"
    (authorization, report) = endpoint.reports[0]
    assert authorization == f"Bearer {AGENT_TOKEN}"
    assert report["input_tokens"] == report["output_tokens"] == 3
    assert done.data["usage"] == {key: report[key] for key in ("provider", "model", "input_tokens", "output_tokens")}
    assert events.get(timeout=10) is None


def test_a_wrong_token_is_refused_with_401(cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]) -> None:
    server_id = create_server(cloud, user_data(usage[0]))
    wait_healthy(cloud, server_id)

    refused = cloud.control.post(
        f"/agents/{server_id}/v1/chat", json={"message": "hi"}, headers={"Authorization": "Bearer wrong-token"}
    )

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {"detail": "Not authenticated"}


def test_state_names_the_agent_of_each_server(
    cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint], request: pytest.FixtureRequest
) -> None:
    server_id = create_server(cloud, user_data(usage[0]))
    wait_healthy(cloud, server_id)

    agent = agent_of(cloud, server_id)

    if request.node.callspec.params["cloud"] == "inline":
        assert agent == {"mode": "inline", "pid": None, "root": None}
    else:
        assert (agent["mode"], agent["state"]) == ("process", "running")
        assert psutil.Process(agent["pid"]).is_running()
        assert Path(agent["root"]).name == str(server_id)
        assert Path(agent["root"]).parent.name == "servers"


# --- process agents: what runs -------------------------------------------------------------------------------


def test_the_process_runs_the_agent_the_user_data_wrote_under_python_isolated(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    data = user_data(usage[0])
    server_id = create_server(process_cloud, data)
    wait_healthy(process_cloud, server_id)

    agent = agent_of(process_cloud, server_id)
    root = Path(agent["root"])
    process = psutil.Process(agent["pid"])
    cmdline = process.cmdline()

    shipped = written_files(data)
    assert process.pid != os.getpid()
    assert cmdline[1:3] == ["-I", str(root / "opt/smoke-agent/agent.py")]
    assert cmdline[3:] == [
        "--config", str(root / "etc/smoke-agent/config.json"), "--host", "127.0.0.1", "--port", str(agent["port"]),
    ]  # fmt: skip
    assert Path(cmdline[0]).resolve() == Path(sys.executable).resolve()
    assert process.cwd() == str(root)
    assert (root / AGENT_PATH.lstrip("/")).read_bytes() == file_content(shipped[AGENT_PATH])
    for path, item in shipped.items():
        assert (root / path.lstrip("/")).stat().st_mode & 0o777 == int(item["permissions"], 8)
    assert [file["path"] for file in agent["files"]] == list(shipped)
    assert agent["service"] == AGENT_UNIT
    assert agent["log"] == str(root / "var/log" / f"{AGENT_UNIT}.log")
    assert agent["skipped_commands"] == []


def test_relayed_streams_are_not_buffered_each_delta_arrives_as_the_llm_sends_it(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    before_last = threading.Event()
    llm = FakeLlm(pieces=["Hel", "lo", " there"], before_last=before_last)
    with fake_llm(llm) as llm_url:
        config = {"provider": "openai", "base_url": llm_url, "model": "small-model-1", "api_key": "sk-x"}
        server_id = create_server(process_cloud, user_data(usage[0], llm=config))
        wait_healthy(process_cloud, server_id)
        events: queue.Queue[Event | None] = queue.Queue()
        reader = threading.Thread(target=chat_events, args=(process_cloud, server_id, "hi", events), daemon=True)
        reader.start()

        first, second = events.get(timeout=10), events.get(timeout=10)  # the last piece is not sent yet
        before_last.set()
        rest = []
        while (event := events.get(timeout=10)) is not None:
            rest.append(event)
        reader.join(timeout=10)

    assert [first, second] == [Event("delta", {"text": "Hel"}), Event("delta", {"text": "lo"})]
    assert [e.event for e in rest] == ["delta", "done"]
    assert rest[-1].data["usage"] == {"provider": "openai", "model": "small-model-1", "input_tokens": 7,
                                      "output_tokens": 3}  # fmt: skip


def test_a_server_whose_user_data_starts_no_agent_answers_503(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = booted(process_cloud, user_data(usage[0], agent="image"))

    answer = healthz(process_cloud, server_id)

    assert answer.status_code == 503
    assert answer.json() == {"detail": "nothing listens on the agent port: the server's user data starts no service"}
    agent = agent_of(process_cloud, server_id)
    assert (agent["state"], agent["pid"], agent["service"]) == ("no_service", None, None)
    assert (Path(agent["root"]) / "etc/smoke-agent/config.json").is_file()


def test_a_server_without_user_data_runs_nothing(process_cloud: SimulatedCloud) -> None:
    server_id = booted(process_cloud, None)

    assert healthz(process_cloud, server_id).status_code == 503
    assert agent_of(process_cloud, server_id)["state"] == "no_service"


def test_units_are_rerooted_and_run_on_a_port_of_the_simulators_choosing(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint], tmp_path: Path
) -> None:
    marker = tmp_path / "touched-by-runcmd"
    unit = (
        "[Service]\n"
        "ExecStart=/usr/bin/python3.12 -I /opt/smoke-agent/agent.py \\\n"
        "    --config=/etc/smoke-agent/config.json --port=8080\n"
        "WorkingDirectory=/opt/smoke-agent\n"
    )
    runcmd = [["touch", str(marker)], "systemctl enable --now smoke-agent"]
    server_id = create_server(process_cloud, with_changes(user_data(usage[0]), unit=unit, runcmd=runcmd))
    wait_for(lambda: agent_of(process_cloud, server_id)["pid"], what="the agent's start")

    agent = agent_of(process_cloud, server_id)
    root = agent["root"]

    assert agent["command"][1:] == [
        "-I", f"{root}/opt/smoke-agent/agent.py", f"--config={root}/etc/smoke-agent/config.json",
        "--host", "127.0.0.1", f"--port={agent['port']}",
    ]  # fmt: skip
    assert psutil.Process(agent["pid"]).cwd() == f"{root}/opt/smoke-agent"
    assert agent["skipped_commands"] == [["touch", str(marker)]]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("exec_start", "problem"),
    [
        ("/usr/bin/node /opt/smoke-agent/agent.js --port 8080",
         "ExecStart runs /usr/bin/node: neither python3 nor a file the user data wrote"),
        ("/usr/bin/python3 -I /opt/smoke-agent/agent.py",
         "ExecStart has no --port: the simulator cannot give the service a port of its own"),
    ],
)  # fmt: skip
def test_a_unit_the_simulator_cannot_run_is_a_failed_agent_that_says_why(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint], exec_start: str, problem: str
) -> None:
    data = with_changes(user_data(usage[0]), unit=f"[Service]\nExecStart={exec_start}\n")
    server_id = booted(process_cloud, data)

    agent = agent_of(process_cloud, server_id)

    assert (agent["state"], agent["pid"], agent["problem"]) == ("failed", None, f"{AGENT_UNIT}: {problem}")
    assert healthz(process_cloud, server_id).json() == {"detail": f"the agent is not running: {AGENT_UNIT}: {problem}"}


@pytest.mark.slow
def test_a_service_that_keeps_failing_is_restarted_as_its_unit_says_until_the_start_limit(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    unit = (
        "[Service]\nExecStart=/usr/bin/python3 -I /opt/smoke-agent/agent.py --config /missing.json --port 8080\n"
        "Restart=on-failure\nRestartSec=50ms\n"
    )
    server_id = booted(process_cloud, with_changes(user_data(usage[0]), unit=unit))

    agent = wait_for(
        lambda: (a := agent_of(process_cloud, server_id))["state"] == "failed" and a, timeout=20, what="the limit"
    )

    assert agent["problem"] == f"{AGENT_UNIT}: start request repeated too quickly (start limit hit)"
    assert agent["exit_code"] == 2
    assert Path(agent["log"]).read_text().count("bad configuration") == 5


# --- process agents: when they end --------------------------------------------------------------------------


def test_deleting_the_server_ends_its_process_and_removes_its_files(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = create_server(process_cloud, user_data(usage[0]))
    wait_healthy(process_cloud, server_id)
    agent = agent_of(process_cloud, server_id)

    assert process_cloud.control.delete(f"/v1/servers/{server_id}", headers=AUTH).status_code == 200

    wait_for(lambda: gone(agent["pid"]), what="the agent's end")
    assert healthz(process_cloud, server_id).status_code == 503  # deleting
    wait_for(lambda: server_id not in [s["id"] for s in process_cloud.servers()], what="the delete")
    assert not Path(agent["root"]).exists()


def test_poweroff_ends_the_process_and_poweron_starts_the_enabled_unit_again(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = create_server(process_cloud, user_data(usage[0]))
    wait_healthy(process_cloud, server_id)
    first = agent_of(process_cloud, server_id)

    power(process_cloud, server_id, "poweroff")
    wait_for(lambda: gone(first["pid"]), what="the agent's end")
    off = healthz(process_cloud, server_id)
    wait_for(lambda: process_cloud.control.get(f"/v1/servers/{server_id}", headers=AUTH).json()["server"]["status"]
             == "off", what="off")  # fmt: skip
    power(process_cloud, server_id, "poweron")
    wait_healthy(process_cloud, server_id)
    second = agent_of(process_cloud, server_id)

    assert off.status_code == 503
    assert second["pid"] != first["pid"]
    assert second["root"] == first["root"]


def test_a_reboot_restarts_the_process(process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]) -> None:
    server_id = create_server(process_cloud, user_data(usage[0]))
    wait_healthy(process_cloud, server_id)
    first = agent_of(process_cloud, server_id)

    power(process_cloud, server_id, "reboot")
    wait_for(lambda: gone(first["pid"]), what="the agent's end")
    wait_healthy(process_cloud, server_id)

    assert agent_of(process_cloud, server_id)["pid"] != first["pid"]


def test_reset_ends_every_process_and_removes_their_files(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_ids = [create_server(process_cloud, user_data(usage[0])) for _ in range(2)]
    for server_id in server_ids:
        wait_healthy(process_cloud, server_id)
    agents = [agent_of(process_cloud, server_id) for server_id in server_ids]

    after = process_cloud.control.post("/_sim/reset").json()

    assert after["servers"] == []
    assert all(gone(agent["pid"]) for agent in agents)  # reset answers once they are gone
    assert not any(Path(agent["root"]).exists() for agent in agents)


def test_the_down_fault_answers_503_without_reaching_the_agent(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = create_server(process_cloud, user_data(usage[0]))
    wait_healthy(process_cloud, server_id)
    log = Path(agent_of(process_cloud, server_id)["log"])
    process_cloud.control.put("/_sim/faults", json={"agent": {"down": True}}).raise_for_status()

    answers = [
        healthz(process_cloud, server_id),
        process_cloud.control.post(f"/agents/{server_id}/v1/chat", json={"message": "hi"}, headers=AUTH),
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(503, {"detail": "the agent is down"})] * 2
    assert "turn" not in log.read_text()


def test_the_mid_stream_fault_cuts_the_relayed_stream_after_its_first_delta(
    process_cloud: SimulatedCloud, usage: tuple[str, UsageEndpoint]
) -> None:
    server_id = create_server(process_cloud, user_data(usage[0]))
    wait_healthy(process_cloud, server_id)
    process_cloud.control.put("/_sim/faults", json={"agent": {"fail_mid_stream_ratio": 1.0}}).raise_for_status()
    received: list[bytes] = []

    with pytest.raises(httpx.RemoteProtocolError):
        read_turn(process_cloud, server_id, "one two three four", received)

    assert b"".join(received) == b'event: delta\nid: 1\ndata: {"text": "one"}\n\n'
    chats = process_cloud.control.get("/_sim/state").json()["chats"]
    assert [(c["server_id"], c["message"], c["outcome"]) for c in chats] == [
        (server_id, "one two three four", "dropped_by_fault")
    ]


# --- process agents: none left behind -----------------------------------------------------------------------


@pytest.mark.slow
def test_stopping_the_simulator_ends_every_agent_and_removes_the_state_dir(usage: tuple[str, UsageEndpoint]) -> None:
    with simulated_cloud_process("--agents", "process", *QUICK) as cloud:
        server_id = create_server(cloud, user_data(usage[0]))
        wait_healthy(cloud, server_id)
        agent = agent_of(cloud, server_id)

    # the block's end sent SIGTERM and waited for the simulator's exit: lifespan shutdown
    assert gone(agent["pid"])
    assert not Path(agent["root"]).parent.parent.exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_simulator_takes_its_agents_with_it(usage: tuple[str, UsageEndpoint]) -> None:
    with simulated_cloud_process("--agents", "process", *QUICK) as cloud:
        server_id = create_server(cloud, user_data(usage[0]))
        wait_healthy(cloud, server_id)
        agent = agent_of(cloud, server_id)
        simulator = psutil.Process(agent["pid"]).parent()
        assert simulator is not None
        simulator.send_signal(signal.SIGKILL)

        wait_for(lambda: gone(agent["pid"]), timeout=5, what="the agent's end after SIGKILL of the simulator")
    state_dir = Path(agent["root"]).parent.parent
    assert state_dir.name.startswith("smoke-sim-")
    shutil.rmtree(state_dir, ignore_errors=True)  # what a killed simulator leaves behind (documented)


async def test_the_lifespan_shutdown_of_an_in_process_simulator_ends_its_agents(
    usage: tuple[str, UsageEndpoint],
) -> None:
    simulator = create_cloud_simulator(action_seconds=0, boot_seconds=0, agents="process")
    async with serve_asgi(simulator) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        body = {"name": "in-process", "server_type": "cpx22", "image": "ubuntu-24.04", "user_data": user_data(usage[0])}
        server_id = (await client.post("/v1/servers", json=body, headers=AUTH)).json()["server"]["id"]
        deadline = time.monotonic() + 10
        while (await client.get(f"/agents/{server_id}/healthz")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        (server,) = (await client.get("/_sim/state")).json()["servers"]
        pid, root = server["agent"]["pid"], Path(server["agent"]["root"])
        assert not gone(pid)

    assert gone(pid)
    assert not root.exists()
    assert not root.parent.parent.exists()
