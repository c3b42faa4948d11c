"""The hostile-input sweep of ``tests/hostile.py`` on PostgreSQL, through a real server (uvicorn on loopback).

The fakes store what PostgreSQL refuses (U+0000); here every value the API accepts reaches the database: provisions
are recorded and enqueued, polls and usage reports are read and written, a chat turn is relayed from the simulated
cloud's agent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from smoke.adapters.tokens import HmacTokenIssuer
from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.domain.services import Provisioner
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from tests.hostile import OPERATIONS, Operation, Sweep
from tests.integration.conftest import SMOKE, provision_body, stack_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def sweep(database_url: str, cloud_url: str) -> AsyncIterator[Sweep]:
    """The API on PostgreSQL on a loopback port, with one instance running at the simulated cloud."""
    port = free_port()
    base = Settings(ops_bearer_token="sweep-ops-token", database_url=database_url, agent_token_secret="sweep-secret")
    settings = stack_settings(base, cloud_url).replace(max_live_instances=10_000, public_url=f"http://127.0.0.1:{port}")
    app = create_app(make_container(settings))
    async with serve_asgi(app, port=port) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {settings.ops_bearer_token}"
        receipt = await client.post(f"{SMOKE}/provision", json=provision_body(f"sweep-{uuid.uuid4().hex}"))
        instance_id = uuid.UUID(receipt.json()["instance_id"])
        provisioner = await app.state.dishka_container.get(Provisioner)
        assert (await provisioner.provision(instance_id)).value == "running"
        document = (await client.get("/schema/openapi.json")).json()
        token = HmacTokenIssuer("sweep-secret").agent_token(instance_id).token
        yield Sweep(client, document, instance_id, token)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.name)
async def test_no_hostile_value_in_any_slot_gets_a_5xx_or_an_undocumented_answer_from_postgresql(
    sweep: Sweep, operation: Operation
) -> None:
    problems = await sweep.run(operation)

    assert problems == []
