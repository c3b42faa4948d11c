"""The hostile-input sweep of ``tests/hostile.py`` on the public fakes: no 5xx, only documented shapes.

The instance the path slots default to is running, with an agent that answers, so values the API accepts reach the
services (a chat turn is relayed, a usage report recorded) rather than stopping at a 404.
"""

from __future__ import annotations

import httpx
import pytest

from smoke.domain.models import ChatEvent, CloudServer, InstanceStatus
from smoke.testing.providers import FakeAdaptersProvider
from tests.hostile import OPERATIONS, Operation, Sweep
from tests.unit.conftest import plant_instance

REPLY = [ChatEvent("delta", '{"text": "hi"}', "1"), ChatEvent("done", '{"usage": {}}', "2")]


@pytest.fixture
async def sweep(client: httpx.AsyncClient, fakes: FakeAdaptersProvider) -> Sweep:
    fakes.agents.reply = REPLY
    instance = plant_instance(fakes, status=InstanceStatus.RUNNING, with_server=False)
    instance = instance.with_server(CloudServer(7, instance.hostname, "running", {}, "203.0.113.7"))
    fakes.db.instances[instance.id] = instance
    fakes.db.credentials[instance.id] = fakes.tokens.agent_token(instance.id).digest
    document = (await client.get("/schema/openapi.json")).json()
    return Sweep(client, document, instance.id, fakes.tokens.agent_token(instance.id).token)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.name)
async def test_no_hostile_value_in_any_slot_gets_a_5xx_or_an_undocumented_answer(
    sweep: Sweep, operation: Operation
) -> None:
    problems = await sweep.run(operation)

    assert problems == []
