from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.lifespan import running
from tests.typed import asgi_transport

TOKEN = "unit-ops-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMOKE = "/internal/v1/smoke"


@pytest.fixture
async def client(fakes: FakeAdaptersProvider) -> AsyncIterator[httpx.AsyncClient]:
    """The API on fakes, called in-process (fine for JSON endpoints; streams need a real server)."""
    app = create_app(make_container(Settings(ops_bearer_token=TOKEN, max_live_instances=3), fakes))
    async with running(app), httpx.AsyncClient(transport=asgi_transport(app), base_url="http://api") as c:
        c.headers.update(AUTH)
        yield c


def provision_body(key: str = "ci-run-1", **changes: str) -> dict[str, str]:
    return {"idempotency_key": key, "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"} | changes
