"""InstanceReader, UsageEventStore and Catalog: fake and PostgreSQL, one suite."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from smoke.domain.errors import UnknownCatalogEntry
from smoke.domain.models import InstanceStatus, InstanceView, Placement, PollResult, UsageCount, UsageEvent
from tests.contracts.conftest import OTHER, SCOPE, Stores


def _event(instance_id: uuid.UUID, request_id: str, provider: str = "anthropic") -> UsageEvent:
    return UsageEvent(instance_id, request_id, provider, "model-1", 12, 34)


async def test_view_shows_this_customers_instance_only(stores: Stores) -> None:
    instance = await stores.inserted()
    theirs = await stores.inserted(OTHER)

    assert await stores.reader.view(SCOPE.customer_id, instance.id) == InstanceView(
        instance.id, instance.hostname, InstanceStatus.PROVISIONING
    )
    assert await stores.reader.view(SCOPE.customer_id, theirs.id) is None
    assert await stores.reader.view(SCOPE.customer_id, uuid.uuid4()) is None


async def test_poll_is_found_once_the_instance_row_exists(stores: Stores) -> None:
    entry = await stores.accepted(key="waiting")
    instance = await stores.inserted()
    found = await stores.ledger.get_by_instance(SCOPE.customer_id, instance.id)
    assert found is not None
    found_key = found.idempotency_key

    assert await stores.reader.poll(SCOPE.customer_id, entry.idempotency_key) == PollResult(False)
    assert await stores.reader.poll(SCOPE.customer_id, found_key) == PollResult(
        True, instance.id, InstanceStatus.PROVISIONING
    )
    assert await stores.reader.poll(OTHER.customer_id, found_key) == PollResult(False)
    assert await stores.reader.poll(SCOPE.customer_id, "never-seen") == PollResult(False)


async def test_owns_is_true_from_acceptance_on_and_only_for_the_owner(stores: Stores) -> None:
    entry = await stores.accepted()

    assert await stores.reader.owns(SCOPE.customer_id, entry.instance_id) is True
    assert await stores.reader.owns(OTHER.customer_id, entry.instance_id) is False
    assert await stores.reader.owns(SCOPE.customer_id, uuid.uuid4()) is False


async def test_a_usage_report_is_stored_once(stores: Stores) -> None:
    instance = await stores.inserted()

    assert await stores.usage.record(_event(instance.id, "r1")) is True
    assert await stores.usage.record(_event(instance.id, "r1")) is False

    assert await stores.usage.count_window(instance.id, 900) == UsageCount(1, ("anthropic",))


async def test_concurrent_copies_of_a_report_are_stored_once(stores: Stores) -> None:
    instance = await stores.inserted()

    results = await asyncio.gather(*(stores.usage.record(_event(instance.id, "r1")) for _ in range(20)))

    assert results.count(True) == 1
    assert (await stores.usage.count_window(instance.id, 900)).count == 1


async def test_the_count_sees_only_this_instance_with_distinct_sorted_providers(stores: Stores) -> None:
    instance, other = await stores.inserted(), await stores.inserted()
    for n, provider in enumerate(["openai", "anthropic", "openai", "google"]):
        await stores.usage.record(_event(instance.id, f"r{n}", provider))
    await stores.usage.record(_event(other.id, "r0", "mistral"))

    count = await stores.usage.count_window(instance.id, 900)

    assert count == UsageCount(4, ("anthropic", "google", "openai"))


async def test_the_same_request_id_on_two_instances_counts_for_each(stores: Stores) -> None:
    instance, other = await stores.inserted(), await stores.inserted()

    assert await stores.usage.record(_event(instance.id, "same")) is True
    assert await stores.usage.record(_event(other.id, "same")) is True


async def test_an_instance_without_events_counts_zero(stores: Stores) -> None:
    instance = await stores.inserted()

    assert await stores.usage.count_window(instance.id, 1) == UsageCount(0, ())


async def test_the_catalog_resolves_the_seeded_ids(stores: Stores) -> None:
    placement = await stores.catalog.resolve("agent-default", "ash", "medium")

    assert placement == Placement("agent-default", "ash", "medium", "ubuntu-24.04", "ash", "cpx32")


@pytest.mark.parametrize(
    ("ids", "field"),
    [
        (("nothing", "nowhere", "huge"), "manifest_id"),
        (("agent-default", "nowhere", "huge"), "region_id"),
        (("agent-default", "fsn1", "huge"), "tier_id"),
    ],
)
async def test_the_catalog_names_the_first_unknown_id(stores: Stores, ids: tuple[str, str, str], field: str) -> None:
    with pytest.raises(UnknownCatalogEntry) as caught:
        await stores.catalog.resolve(*ids)

    assert caught.value.field == field
