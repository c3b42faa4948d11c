"""Integration tests: real PostgreSQL, the real saq queue, real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.settings import Settings
from tests.lifespan import running

SMOKE = "/internal/v1/smoke"


@pytest.fixture
async def db(clean_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the (cleaned) test database, to look at what the code under test stored."""
    conn = await asyncpg.connect(clean_database)
    yield conn
    await conn.close()


@pytest.fixture
async def api(settings: Settings, clean_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the real container (PostgreSQL, saq on PostgreSQL), called in-process: JSON endpoints only."""
    app = create_app(make_container(settings.replace(max_live_instances=3)))
    transport = httpx.ASGITransport(app=app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        client.headers["Authorization"] = f"Bearer {settings.ops_bearer_token}"
        yield client


def provision_body(key: str = "ci-run-1", **changes: str) -> dict[str, str]:
    return {"idempotency_key": key, "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"} | changes
