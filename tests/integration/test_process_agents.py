"""``smoke up --agents process``: smoke demo's path with the reference agent run from the server's user data.

The stack is the real command, a process of its own (on the test database); ``smoke check``'s scenario runs against
it; ``/_sim/state`` of its simulator, ``/proc`` (psutil) and the server's root show that the reply came from a
separate process started from the files the user data wrote, and that the process ended with the server.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from smoke.adapters.cloud_init import AGENT_PATH, cloud_config
from smoke.check import CheckOptions, SmokeCheck
from smoke.client import SmokeClient
from smoke.serving import free_port
from tests.agent.support import file_content, written_files

OPS_TOKEN = "ops-token-of-the-process-agents-test"


@dataclass
class Stack:
    api_url: str
    cloud_url: str
    process: subprocess.Popen[str]


@pytest.fixture
def stack(clean_database: str, tmp_path: Path) -> Iterator[Stack]:
    """``smoke up --agents process`` on a free port, answering; SIGTERM at the end (it must exit 0)."""
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": clean_database,
        "OPS_BEARER_TOKEN": OPS_TOKEN,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smoke", "up", "--port", str(port), "--agents", "process"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        cloud_url = _cloud_url_from_banner(process)
        yield Stack(f"http://127.0.0.1:{port}", cloud_url, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()


def _cloud_url_from_banner(process: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline, seen = time.monotonic() + timeout, []
    assert process.stdout is not None
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        seen.append(line)
        if match := re.search(r"smoke: cloud: (http://\S+)/v1", line):
            return match.group(1)
    raise AssertionError("smoke up printed no cloud URL:\n" + "".join(seen))


@pytest.mark.slow
async def test_smoke_demo_path_with_process_agents_chats_with_the_agent_the_user_data_started(stack: Stack) -> None:
    options = CheckOptions(base_url=stack.api_url, token=OPS_TOKEN, poll_interval=0.1, timeout=120, keep=True)

    report = (await SmokeCheck(options).run()).to_json()

    steps = {step["name"]: step for step in report["steps"]}
    assert [steps[name]["status"] for name in ("provision", "poll", "wait-running", "chat", "llm-events")] == [
        "passed"
    ] * 5, report
    assert report["reply"] == "hello from smoke check"
    assert steps["chat"]["message"] == "4 deltas; usage echo/echo-1: 4 in, 4 out"  # the reference agent's echo
    assert steps["llm-events"]["message"] == "count 1 (echo)"

    async with httpx.AsyncClient(base_url=stack.cloud_url, timeout=10) as cloud:
        (server,) = (await cloud.get("/_sim/state")).json()["servers"]
        agent: dict[str, Any] = server["agent"]
        root = Path(agent["root"])
        process = psutil.Process(agent["pid"])
        assert agent["mode"] == "process"
        assert process.pid not in (os.getpid(), stack.process.pid)
        assert process.ppid() == stack.process.pid
        assert process.cmdline()[1:3] == ["-I", str(root / "opt/smoke-agent/agent.py")]
        shipped = written_files(cloud_config(agent_config={}, agent="reference", agent_port=8080, extra_user_data=None))
        assert (root / "opt/smoke-agent/agent.py").read_bytes() == file_content(shipped[AGENT_PATH])
        (chat,) = (await cloud.get("/_sim/state")).json()["chats"]
        assert (chat["message"], chat["outcome"]) == ("hello from smoke check", "done")

        async with SmokeClient(stack.api_url, OPS_TOKEN) as api:
            instance_id = report["instance_id"]
            await api.delete(instance_id)
            deadline = time.monotonic() + 60
            while (await api.status(instance_id)).status != "deleted":
                assert time.monotonic() < deadline, "the instance was never deleted"
                await asyncio.sleep(0.2)

        assert (await cloud.get("/_sim/state")).json()["servers"] == []
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert not root.exists()


@pytest.mark.slow
def test_smoke_up_leaves_no_agent_process_behind_when_it_stops(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10, headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as api:
        body = {"idempotency_key": "up-1", "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"}
        instance_id = api.post("/internal/v1/smoke/provision", json=body).json()["instance_id"]
        deadline = time.monotonic() + 60
        while api.get(f"/internal/v1/smoke/instances/{instance_id}").json().get("status") != "running":
            assert time.monotonic() < deadline, "the instance never reached running"
            time.sleep(0.2)
    (server,) = httpx.get(f"{stack.cloud_url}/_sim/state").json()["servers"]
    agent = psutil.Process(server["agent"]["pid"])
    state_dir = Path(server["agent"]["root"]).parent.parent

    stack.process.send_signal(signal.SIGTERM)

    assert stack.process.wait(30) == 0
    assert not agent.is_running() or agent.status() == psutil.STATUS_ZOMBIE
    assert not state_dir.exists()
