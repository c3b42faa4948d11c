"""The same provisioning with the job queue on Redis (``QUEUE_URL=redis://...``).

The Redis is this run's own ``redis-server`` or the one of ``SMOKE_TEST_REDIS_URL`` (``tests/conftest.py``); either
way the test's stack runs a saq queue of a name of its own, and only that queue's keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as redis

from smoke.adapters import queue
from smoke.settings import Settings
from tests.conftest import RedisServer
from tests.integration.conftest import SMOKE, provision_body, running_stack, stack_settings
from tests.integration.support import reaches, servers

pytestmark = pytest.mark.redis


@pytest.mark.slow
async def test_provision_and_delete_run_on_the_redis_queue(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    clean_database: str,
    redis_url: str,
    redis_server: RedisServer,
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

    if redis_server.private:  # nobody else's keys here: everything in it is the queue's, so its cleanup is complete
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = [key async for key in client.scan_iter(count=1000)]
        finally:
            await client.aclose()
        own = (f"saq:{queue.QUEUE_NAME}:", f"saq:job:{queue.QUEUE_NAME}:")
        assert queue.QUEUE_NAME.startswith("smoke-test-")
        assert keys
        assert [key for key in keys if not key.startswith(own)] == []
