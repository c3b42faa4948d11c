"""What must end in a correct state without an operator: a worker killed mid-job, an instance never deleted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from smoke.settings import Settings
from tests.integration.conftest import SMOKE, provision_body, running_stack, stack_settings
from tests.integration.support import reaches, reconcile, servers, until


def _environment(settings: Settings) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url or "",
        "HETZNER_API_URL": settings.hetzner_api_url,
        "HETZNER_API_TOKEN": settings.hetzner_api_token or "",
        "AGENT_TOKEN_SECRET": settings.agent_token_secret or "",
        "AGENT_URL_TEMPLATE": settings.agent_url_template,
        "PROVISION_POLL_SECONDS": str(settings.provision_poll_seconds),
        "PROVISION_TIMEOUT_SECONDS": str(settings.provision_timeout_seconds),
        "JOB_HEARTBEAT_SECONDS": str(settings.job_heartbeat_seconds),
        "QUEUE_SWEEP_SECONDS": str(settings.queue_sweep_seconds),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def worker_process(settings: Settings, cloud_url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``smoke worker`` processes with ``start()``; each is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "smoke", "worker"], env=_environment(settings))


@pytest.mark.slow
async def test_a_worker_killed_mid_provision_is_replaced_and_no_second_server_appears(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    clean_database: str,
    worker_process: list[subprocess.Popen[bytes]],
) -> None:
    configured = stack_settings(settings, cloud_url)
    (await cloud.put("/_sim/faults", json={"agent": {"down": True}})).raise_for_status()  # hold it mid-provision
    async with running_stack(configured, with_worker=False) as api:
        worker_process.append(first := _start_worker(configured))
        instance_id = (await api.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]

        async def server_exists() -> bool:
            return len(await servers(cloud)) == 1

        await until(server_exists, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        (await cloud.put("/_sim/faults", json={"agent": {"down": False}})).raise_for_status()
        worker_process.append(_start_worker(configured))

        await reaches(api, instance_id, "running", timeout=90)

        assert len(await servers(cloud)) == 1
        requests = (await cloud.get("/_sim/state")).json()["requests"]
        assert requests.get("POST /v1/servers") == 1


@pytest.mark.slow
async def test_an_instance_never_deleted_is_deleted_once_past_its_ttl(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> None:
    configured = stack_settings(settings, cloud_url).replace(instance_ttl_seconds=2)
    async with running_stack(configured) as api:
        instance_id = (await api.post(f"{SMOKE}/provision", json=provision_body())).json()["instance_id"]
        await reaches(api, instance_id, "running")
        await asyncio.sleep(2.5)

        report = await reconcile(api)

        assert report["expired_instances"] == 1
        await reaches(api, instance_id, "deleted")
        assert await servers(cloud) == []
