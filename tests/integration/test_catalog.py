"""The catalog as configuration: a file of the platform's own entries, stored, provisioned from, edited, retired."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smoke.adapters.postgres.migrate import seed
from smoke.catalog_file import load_catalog
from smoke.settings import Settings
from tests.integration.conftest import SIM_TOKEN, SMOKE, running_stack, stack_settings
from tests.integration.support import reaches, servers

CATALOG = """
[regions.eu-central]
location = "nbg1"
[tiers.tiny]
server_type = "cpx12"
[manifests.platform-agent]
image = {image_id}
agent = "image"
agent_port = 8080
"""


@pytest.fixture(autouse=True)
def _seeded_catalog_back(clean_database: str, settings: Settings) -> Iterator[None]:
    """These tests store catalogs of their own: the rest of the run expects the built-in one."""
    yield
    seed(clean_database, settings.customer_scope())


def _body(key: str, manifest: str = "platform-agent", region: str = "eu-central", tier: str = "tiny") -> dict[str, str]:
    return {"idempotency_key": key, "manifest_id": manifest, "region_id": region, "tier_id": tier}


async def _image_id(cloud: httpx.AsyncClient) -> int:
    listing = await cloud.get(
        "/v1/images",
        params={"name": "ubuntu-24.04", "architecture": "x86"},
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
    )
    return int(listing.json()["images"][0]["id"])


async def test_a_custom_catalog_provisions_its_ids_and_refuses_the_removed_ones(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG.format(image_id=await _image_id(cloud)))
    catalog = load_catalog(path, {})
    seed(clean_database, settings.customer_scope(), catalog)
    configured = stack_settings(settings, cloud_url).replace(catalog=catalog)

    async with running_stack(configured) as api:
        accepted = await api.post(f"{SMOKE}/provision", json=_body("custom-1"))
        removed = await api.post(f"{SMOKE}/provision", json=_body("seeded-1", "agent-default", "fsn1", "small"))
        await reaches(api, accepted.json()["instance_id"], "running")

    assert accepted.status_code == 200
    assert (removed.status_code, removed.json()["detail"][0]["loc"]) == (422, ["body", "manifest_id"])
    [server] = await servers(cloud)
    assert (server["location"], server["server_type"]) == ("nbg1", "cpx12")


async def test_editing_the_file_updates_entries_and_retires_the_removed_ones_for_new_requests_only(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG.format(image_id=await _image_id(cloud)))
    seed(clean_database, settings.customer_scope(), load_catalog(path, {}))
    first = stack_settings(settings, cloud_url).replace(catalog=load_catalog(path, {}))
    async with running_stack(first) as api:
        kept = (await api.post(f"{SMOKE}/provision", json=_body("before-edit"))).json()["instance_id"]
        await reaches(api, kept, "running")

    path.write_text(path.read_text().replace("[tiers.tiny]", "[tiers.small]").replace("cpx12", "cpx22"))
    seed(clean_database, settings.customer_scope(), load_catalog(path, {}))
    second = first.replace(catalog=load_catalog(path, {}))
    async with running_stack(second) as api:
        retired = await api.post(f"{SMOKE}/provision", json=_body("after-edit"))
        renamed = await api.post(f"{SMOKE}/provision", json=_body("after-edit-2", tier="small"))
        still_there = await api.get(f"{SMOKE}/instances/{kept}")
        deleted = await api.delete(f"{SMOKE}/instances/{kept}")

    assert (retired.status_code, retired.json()["detail"][0]["loc"]) == (422, ["body", "tier_id"])
    assert renamed.status_code == 200
    assert (still_there.json()["status"], deleted.status_code) == ("running", 200)


def test_a_malformed_catalog_file_stops_the_command_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG.format(image_id=1).replace("agent_port = 8080", "agent_port = 80800"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMOKE_", "DATABASE_URL"))}

    result = subprocess.run(
        [sys.executable, "-m", "smoke", "migrate", "--seed"],
        env=env | {"SMOKE_CATALOG": str(path), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"smoke: SMOKE_CATALOG: {path}: manifests.platform-agent: agent_port: must be a TCP port 1..65535, not 80800"
    ]
