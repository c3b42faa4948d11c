"""``smoke check`` for real: against the API on a loopback server, the worker and the simulated cloud."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.check import CheckOptions, SmokeCheck
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.simulators import create_cloud_simulator
from smoke.worker import running_worker
from tests.integration.conftest import stack_settings
from tests.integration.support import servers


@pytest.fixture
async def api_url(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> AsyncIterator[str]:
    """The API served on a loopback port (streams need a real server), an in-process worker, the simulated cloud."""
    port = free_port()
    stack = stack_settings(settings, cloud_url).replace(public_url=f"http://127.0.0.1:{port}")
    container = make_container(stack)
    async with serve_asgi(create_app(container), port=port) as url, running_worker(container, stack):
        yield url


@pytest.fixture
async def api_url_on_a_cloud_refusing_the_token(settings: Settings, clean_database: str) -> AsyncIterator[str]:
    """The stack as ``api_url``, on a simulated cloud that accepts another token than the worker's own."""
    simulator = create_cloud_simulator(token="not-the-workers-token", action_seconds=0.1, boot_seconds=0.1)
    async with serve_asgi(simulator) as cloud_url:
        port = free_port()
        stack = stack_settings(settings, cloud_url).replace(public_url=f"http://127.0.0.1:{port}")
        container = make_container(stack)
        async with serve_asgi(create_app(container), port=port) as url, running_worker(container, stack):
            yield url


class FirstProvisionAnswered503:
    """Passes every request to ``app``; the first provision is acted on, and then its answer replaced by a 503 (as
    when the API recorded the request and lost its database or queue before answering)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.replaced = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.replaced or scope["type"] != "http" or not scope["path"].endswith("/provision"):
            await self.app(scope, receive, send)
            return
        self.replaced = True

        async def swallow(message: dict[str, Any]) -> None:
            pass

        await self.app(scope, receive, swallow)
        response = httpx.Response(503, json={"detail": "Database or queue unavailable, retry later"})
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})


@pytest.fixture
async def api_url_answering_the_first_provision_503(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> AsyncIterator[str]:
    """The stack as ``api_url``, with ``FirstProvisionAnswered503`` in front of the API."""
    port = free_port()
    stack = stack_settings(settings, cloud_url).replace(public_url=f"http://127.0.0.1:{port}")
    container = make_container(stack)
    app = FirstProvisionAnswered503(create_app(container))
    async with serve_asgi(app, port=port) as url, running_worker(container, stack):
        yield url


def smoke_command(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)} | env
    return subprocess.run(
        [sys.executable, "-m", "smoke", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
async def test_the_check_passes_end_to_end_and_leaves_no_server(
    api_url: str, settings: Settings, cloud: httpx.AsyncClient
) -> None:
    assert settings.ops_bearer_token is not None
    options = CheckOptions(base_url=api_url, token=settings.ops_bearer_token, poll_interval=0.1, timeout=120)

    report = await SmokeCheck(options).run()

    document = report.to_json()
    assert (document["exit_code"], document["passed"]) == (0, True), report.summary
    assert {step["status"] for step in document["steps"]} == {"passed"}
    assert document["reply"] == "hello from smoke check"
    assert await servers(cloud) == []


@pytest.mark.slow
async def test_a_provision_answered_503_and_retried_is_one_instance_and_one_server_and_leaves_none(
    api_url_answering_the_first_provision_503: str,
    settings: Settings,
    cloud: httpx.AsyncClient,
    db: asyncpg.Connection,
) -> None:
    assert settings.ops_bearer_token is not None
    options = CheckOptions(
        base_url=api_url_answering_the_first_provision_503,
        token=settings.ops_bearer_token,
        poll_interval=0.1,
        timeout=120,
    )

    report = await SmokeCheck(options).run()

    assert report.exit_code == 0, report.summary
    assert await db.fetchval("SELECT count(*) FROM instances") == 1
    created = (await cloud.get("/_sim/state")).json()["requests"]
    assert sum(count for endpoint, count in created.items() if endpoint.startswith("POST /v1/servers")) == 1
    assert await servers(cloud) == []


async def test_an_unknown_region_is_refused_with_exit_2_and_creates_nothing(
    api_url: str, settings: Settings, cloud: httpx.AsyncClient
) -> None:
    assert settings.ops_bearer_token is not None
    options = CheckOptions(base_url=api_url, token=settings.ops_bearer_token, region_id="nowhere")

    report = await SmokeCheck(options).run()

    assert report.exit_code == 2
    assert report.summary == (
        "smoke check: provision refused: Unknown region 'nowhere' (body.region_id); "
        "valid region_id: ash, fsn1, hel1, hil, nbg1, sin"
    )
    assert await servers(cloud) == []


def test_the_command_against_nothing_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = smoke_command("check", "--base-url", url, "--token", "t", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr == f"smoke check failed at provision: cannot reach {url}: connection refused\n"
    assert result.stdout == ""


async def test_the_command_with_a_wrong_token_exits_2_and_writes_its_reports(api_url: str, tmp_path: Path) -> None:
    junit = tmp_path / "smoke.xml"

    arguments = ("check", "--base-url", api_url, "--token", "wrong", "--json", "--junit-xml", str(junit))

    result = await asyncio.to_thread(smoke_command, *arguments, cwd=tmp_path)  # the loop serves the API meanwhile

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "smoke check: the API refused the token (401 Not authenticated): check --token or OPS_BEARER_TOKEN"
    ]
    assert json.loads(result.stdout)["exit_code"] == 2
    assert junit.read_text().startswith("<?xml")


@pytest.mark.slow
def test_smoke_demo_checks_a_stack_on_throwaway_state_and_exits_with_the_checks_code(tmp_path: Path) -> None:
    junit = tmp_path / "smoke.xml"

    result = smoke_command("demo", "--json", "--junit-xml", str(junit), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    assert result.stderr.splitlines()[-1].startswith("smoke check passed in ")
    assert "Traceback" not in result.stderr
    assert junit.is_file()
    state = re.search(r"starting embedded PostgreSQL in (\S+)", result.stderr)
    assert state is not None
    assert not Path(state.group(1)).parent.exists()  # removed afterwards
    assert not (tmp_path / ".smoke").exists()  # never the state of smoke up


@pytest.mark.slow
def test_smoke_demo_passes_with_the_reference_agent_run_as_a_process_from_the_user_data(tmp_path: Path) -> None:
    result = smoke_command("demo", "--agents", "process", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    steps = {step["name"]: step for step in json.loads(result.stdout)["steps"]}
    assert "usage echo/echo-1" in steps["chat"]["message"]  # the reference agent's echo backend, not the inline agent


@pytest.mark.slow
async def test_a_refused_hetzner_token_fails_the_command_in_seconds_naming_the_refusal(
    api_url_on_a_cloud_refusing_the_token: str, settings: Settings, tmp_path: Path
) -> None:
    assert settings.ops_bearer_token is not None
    junit = tmp_path / "smoke.xml"
    arguments = ("check", "--base-url", api_url_on_a_cloud_refusing_the_token, "--junit-xml", str(junit))
    started = time.monotonic()

    result = await asyncio.to_thread(
        smoke_command, *arguments, cwd=tmp_path, OPS_BEARER_TOKEN=settings.ops_bearer_token
    )

    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith("smoke check failed at wait-running: ")
    assert "; reason: Hetzner: unauthorized: " in summary
    assert summary.endswith("; the cloud refuses the worker's HETZNER_API_TOKEN (also failed: wait-deleted)")
    failure = ET.parse(junit).find("testsuite/testcase[@name='wait-running']/failure")
    assert failure is not None
    assert "Hetzner: unauthorized: " in failure.get("message", "")
