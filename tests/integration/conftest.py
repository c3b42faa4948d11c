"""Integration tests: real PostgreSQL, the real saq queue, real HTTP on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.settings import Settings
from smoke.worker import running_worker
from tests.lifespan import running
from tests.typed import asgi_transport

SMOKE = "/internal/v1/smoke"
SIM_TOKEN = "sim-token"


@pytest.fixture
async def api(settings: Settings, clean_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the real container (PostgreSQL, saq on PostgreSQL), called in-process: JSON endpoints only."""
    app = create_app(make_container(settings.replace(max_live_instances=3)))
    transport = asgi_transport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        client.headers["Authorization"] = f"Bearer {settings.ops_bearer_token}"
        yield client


def provision_body(key: str = "ci-run-1", **changes: str) -> dict[str, str]:
    return {"idempotency_key": key, "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"} | changes


def stack_settings(settings: Settings, cloud_url: str) -> Settings:
    """Settings that point the worker at the simulated cloud, with short heartbeats and sweeps."""
    return settings.replace(
        hetzner_api_url=f"{cloud_url}/v1",
        hetzner_api_token=SIM_TOKEN,
        agent_url_template=f"{cloud_url}/agents/{{provider_server_id}}",
        provision_poll_seconds=0.1,
        provision_timeout_seconds=60,
        max_live_instances=25,
        job_heartbeat_seconds=3,
        queue_sweep_seconds=1,
    )


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, with_worker: bool = True, concurrency: int = 10
) -> AsyncIterator[httpx.AsyncClient]:
    """The API (and an in-process worker running ``concurrency`` jobs at once) on ``settings``; a client of the API,
    called in-process."""
    container = make_container(settings)
    app = create_app(container)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(app))
        if with_worker:
            await stack.enter_async_context(running_worker(container, settings, concurrency=concurrency))
        transport = asgi_transport(app)
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://api"))
        client.headers["Authorization"] = f"Bearer {settings.ops_bearer_token}"
        yield client


@pytest.fixture
async def stack(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API and an in-process worker on PostgreSQL and the simulated cloud; a client of the API."""
    async with running_stack(stack_settings(settings, cloud_url)) as client:
        yield client
