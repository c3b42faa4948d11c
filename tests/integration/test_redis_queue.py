"""The same provisioning with the job queue on Redis (``QUEUE_URL=redis://...``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from smoke.settings import Settings
from tests.integration.conftest import SMOKE, provision_body, running_stack, stack_settings
from tests.integration.support import reaches, servers

pytestmark = pytest.mark.redis


async def test_provision_and_delete_run_on_the_redis_queue(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str, redis_url: str
) -> None:
    configured = stack_settings(settings, cloud_url).replace(queue_url=redis_url)
    async with running_stack(configured) as api:
        responses = await asyncio.gather(*(api.post(f"{SMOKE}/provision", json=provision_body()) for _ in range(10)))
        assert len({r.content for r in responses}) == 1
        instance_id = responses[0].json()["instance_id"]
        await reaches(api, instance_id, "running")
        assert len(await servers(cloud)) == 1

        await api.delete(f"{SMOKE}/instances/{instance_id}")

        await reaches(api, instance_id, "deleted")
        assert await servers(cloud) == []
