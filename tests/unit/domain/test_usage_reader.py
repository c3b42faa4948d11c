from __future__ import annotations

import uuid

import pytest

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import UsageCount, UsageEvent
from smoke.domain.services import UsageReader
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, plant_request


def _event(instance_id: uuid.UUID, request_id: str, provider: str = "anthropic") -> UsageEvent:
    return UsageEvent(instance_id, request_id, provider, "model-1", 10, 20)


async def test_counts_only_this_instances_events_inside_the_window(
    usage_reader: UsageReader, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    await fakes.usage.record(_event(instance_id, "old"))
    fakes.db.clock.advance(901)
    await fakes.usage.record(_event(instance_id, "edge", "openai"))
    fakes.db.clock.advance(900)
    await fakes.usage.record(_event(instance_id, "fresh", "anthropic"))
    await fakes.usage.record(_event(uuid.uuid4(), "another instance", "mistral"))

    count = await usage_reader.count(instance_id, 900)

    assert count == UsageCount(2, ("anthropic", "openai"))


async def test_a_report_recorded_twice_counts_once(usage_reader: UsageReader, fakes: FakeAdaptersProvider) -> None:
    instance_id = plant_request(fakes).instance_id

    assert await fakes.usage.record(_event(instance_id, "r1")) is True
    assert await fakes.usage.record(_event(instance_id, "r1")) is False

    assert (await usage_reader.count(instance_id, 900)).count == 1


async def test_counting_an_instance_never_allocated_or_another_customers_is_not_found(
    usage_reader: UsageReader, fakes: FakeAdaptersProvider
) -> None:
    for instance_id in (uuid.uuid4(), plant_request(fakes, OTHER).instance_id):
        with pytest.raises(InstanceNotFound):
            await usage_reader.count(instance_id, 900)
