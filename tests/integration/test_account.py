"""The Hetzner account as smoke needs it: the token, the SSH keys, the agent firewall, the catalog orderable."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from smoke.settings import Settings
from tests.integration.conftest import SIM_TOKEN, SMOKE, provision_body, running_stack, stack_settings
from tests.integration.support import reaches

CIDRS = ("203.0.113.0/24", "2001:db8::/32")
AUTH = {"Authorization": f"Bearer {SIM_TOKEN}"}
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@smoke"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def _smoke(*args: str, env: dict[str, str], timeout: float = 60) -> Ran:
    """``smoke <args>`` as a process; awaited, so the in-process simulator it talks to keeps answering."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMOKE_", "HETZNER_", "DATABASE_URL", "AGENT_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smoke", *args, env=clean | env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


def _worker_env(settings: Settings, cloud_url: str, **changes: str) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        "DATABASE_URL": settings.database_url,
        "AGENT_TOKEN_SECRET": "test-agent-secret",
        "HETZNER_API_URL": f"{cloud_url}/v1",
        "HETZNER_API_TOKEN": SIM_TOKEN,
        **changes,
    }


async def _firewalls(cloud: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await cloud.get("/v1/firewalls", headers=AUTH)).json()["firewalls"])


@pytest.mark.slow
async def test_ten_provisions_and_a_restart_keep_exactly_one_firewall_on_every_server_with_the_keys(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> None:
    await cloud.post("/v1/ssh_keys", json={"name": "ci", "public_key": PUBLIC_KEY}, headers=AUTH)
    guarded = stack_settings(settings, cloud_url).replace(agent_allowed_cidrs=CIDRS, hetzner_ssh_keys=("ci",))
    for run in range(2):  # the second run is a restart: a new process that knows nothing of the firewall
        async with running_stack(guarded) as api:
            ids = [
                (await api.post(f"{SMOKE}/provision", json=provision_body(f"fw-{run}-{n}"))).json()["instance_id"]
                for n in range(5)
            ]
            for instance_id in ids:
                await reaches(api, instance_id, "running")

    [firewall] = await _firewalls(cloud)
    servers = (await cloud.get("/v1/servers", headers=AUTH)).json()["servers"]
    assert len(servers) == 10
    assert {tuple(f["id"] for f in s["public_net"]["firewalls"]) for s in servers} == {(firewall["id"],)}
    assert [(r["direction"], r["protocol"], r["port"], sorted(r["source_ips"])) for r in firewall["rules"]] == [
        ("in", "tcp", "8080", sorted(CIDRS))
    ]
    assert firewall["labels"]["managed-by"] == "smoke"


@pytest.mark.slow
async def test_a_worker_refuses_to_start_on_a_refused_token_or_an_unknown_ssh_key(
    settings: Settings, cloud_url: str
) -> None:
    refused = await _smoke("worker", env=_worker_env(settings, cloud_url, HETZNER_API_TOKEN="not-the-token"))
    unknown_key = await _smoke("worker", env=_worker_env(settings, cloud_url, HETZNER_SSH_KEYS="laptop"))

    assert (refused.returncode, unknown_key.returncode) == (2, 2)
    assert refused.stderr.splitlines() == [
        "smoke: the cloud account cannot serve smoke: Hetzner: unauthorized: unable to authenticate: the API token "
        "was refused"
    ]
    assert unknown_key.stderr.splitlines()[-1] == (
        "smoke: the cloud account cannot serve smoke: HETZNER_SSH_KEYS: the project has no SSH key 'laptop'"
    )


@pytest.mark.parametrize(
    ("faults", "exit_code"), [({}, 0), ({"unavailable": [{"location": "ash", "server_type": "cpx32"}]}, 1)]
)
@pytest.mark.slow
async def test_catalog_check_says_what_cannot_be_ordered(
    cloud_url: str, cloud: httpx.AsyncClient, faults: dict[str, Any], exit_code: int
) -> None:
    await cloud.put("/_sim/faults", json={"hetzner": faults})

    result = await _smoke(
        "catalog", "check", env={"HETZNER_API_URL": f"{cloud_url}/v1", "HETZNER_API_TOKEN": SIM_TOKEN}
    )

    assert result.returncode == exit_code
    if exit_code:
        assert result.stdout.splitlines() == [
            "smoke catalog check: tiers.medium in regions.ash: server type 'cpx32' cannot be ordered in 'ash' now"
        ]
    else:
        assert result.stdout.splitlines() == ["smoke catalog check: all 10 entries can be ordered"]
