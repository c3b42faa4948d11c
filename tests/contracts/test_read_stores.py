"""InstanceReader, UsageEventStore and Catalog: fake and PostgreSQL, one suite."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from smoke.domain.errors import UnknownCatalogEntry
from smoke.domain.models import (
    Instance,
    InstanceStatus,
    InstanceView,
    Manifest,
    Placement,
    PollResult,
    UsageCount,
    UsageEvent,
)
from tests.contracts.conftest import OTHER, T0, Stores, minutes


def _event(instance_id: uuid.UUID, request_id: str, provider: str = "anthropic") -> UsageEvent:
    return UsageEvent(instance_id, request_id, provider, "model-1", 12, 34)


async def test_view_shows_this_customers_instance_only(stores: Stores) -> None:
    instance = await stores.inserted()
    theirs = await stores.inserted(OTHER)
    their_request = await stores.accepted(OTHER)

    assert await stores.reader.view(instance.id) == InstanceView(
        instance.id, instance.hostname, InstanceStatus.PROVISIONING
    )
    assert await stores.reader.view(theirs.id) is None
    assert await stores.reader.view(their_request.instance_id) is None
    assert await stores.reader.view(uuid.uuid4()) is None


async def test_view_of_an_accepted_request_not_inserted_yet_is_queued(stores: Stores) -> None:
    entry = await stores.accepted()

    assert await stores.reader.view(entry.instance_id) == InstanceView(
        entry.instance_id, Instance.hostname_for(entry.instance_id), InstanceStatus.QUEUED
    )


async def test_poll_is_found_once_the_instance_row_exists(stores: Stores) -> None:
    entry = await stores.accepted(key="waiting")
    instance = await stores.inserted()
    async with stores.database.begin() as uow:
        found = await uow.ledger.get_by_instance(instance.id)
    assert found is not None

    assert await stores.reader.poll(entry.idempotency_key) == PollResult(False)
    assert await stores.reader.poll(found.idempotency_key) == PollResult(True, instance.id, InstanceStatus.PROVISIONING)
    assert await stores.their_reader.poll(found.idempotency_key) == PollResult(False)
    assert await stores.reader.poll("never-seen") == PollResult(False)


async def test_owns_is_true_from_acceptance_on_and_only_for_the_owner(stores: Stores) -> None:
    entry = await stores.accepted()

    assert await stores.reader.owns(entry.instance_id) is True
    assert await stores.their_reader.owns(entry.instance_id) is False
    assert await stores.reader.owns(uuid.uuid4()) is False


async def test_instance_is_the_whole_row_of_ours_only(stores: Stores) -> None:
    instance = await stores.inserted()
    theirs = await stores.inserted(OTHER)

    assert await stores.reader.instance(instance.id) == instance
    assert await stores.reader.instance(theirs.id) is None


async def test_events_start_at_acceptance_and_follow_every_change_with_its_reason(stores: Stores) -> None:
    instance = await stores.inserted()
    async with stores.database.begin() as uow:
        await uow.instances.get(instance.id, lock=True)
        await uow.instances.note(instance, "retrying: rate limited")
        await uow.instances.get(instance.id, lock=True)
        await uow.instances.save(instance.with_status(InstanceStatus.FAILED, "Hetzner: placement_error: no room"))
        await uow.commit()

    events = await stores.reader.events(instance.id)

    assert events is not None
    assert [(e.status, e.reason) for e in events] == [
        (InstanceStatus.QUEUED, None),
        (InstanceStatus.PROVISIONING, None),
        (InstanceStatus.PROVISIONING, "retrying: rate limited"),
        (InstanceStatus.FAILED, "Hetzner: placement_error: no room"),
    ]
    assert events[0].created_at == T0


async def test_events_of_a_request_not_inserted_yet_are_its_acceptance_and_theirs_are_none(stores: Stores) -> None:
    entry = await stores.accepted()
    theirs = await stores.inserted(OTHER)

    assert [e.status for e in await stores.reader.events(entry.instance_id) or []] == [InstanceStatus.QUEUED]
    assert await stores.reader.events(theirs.id) is None
    assert await stores.reader.events(uuid.uuid4()) is None


async def test_the_page_lists_ours_newest_first_and_resumes_after_the_cursor(stores: Stores) -> None:
    ours = [await stores.inserted(at=T0 + minutes(n)) for n in range(3)]
    queued = await stores.accepted(at=T0 + minutes(3))
    await stores.inserted(OTHER, at=T0 + minutes(10))

    first = await stores.reader.page(status=None, limit=3, before=None)
    rest = await stores.reader.page(status=None, limit=3, before=first.next_before)

    assert [s.id for s in first.instances] == [queued.instance_id, ours[2].id, ours[1].id]
    assert [s.id for s in rest.instances] == [ours[0].id]
    assert (first.instances[0].status, first.instances[0].hostname) == (
        InstanceStatus.QUEUED,
        Instance.hostname_for(queued.instance_id),
    )
    assert rest.next_before is None


async def test_the_page_filters_by_status_and_carries_the_timeline(stores: Stores) -> None:
    running, failed = await stores.inserted(), await stores.inserted()
    async with stores.database.begin() as uow:
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(running.with_status(InstanceStatus.RUNNING))
        await uow.instances.get(failed.id, lock=True)
        await uow.instances.save(failed.with_status(InstanceStatus.FAILED, "boom"))
        await uow.commit()

    [summary] = (await stores.reader.page(status=InstanceStatus.FAILED, limit=50, before=None)).instances
    [ran] = (await stores.reader.page(status=InstanceStatus.RUNNING, limit=50, before=None)).instances

    assert (summary.id, summary.reason, summary.running_at, summary.provision_seconds) == (
        failed.id,
        "boom",
        None,
        None,
    )
    assert ran.running_at is not None
    assert ran.provision_seconds is not None


async def test_recent_lists_ours_accepted_since_newest_first_up_to_the_limit(stores: Stores) -> None:
    await stores.inserted(at=T0 - minutes(1))
    ours = [await stores.inserted(at=T0 + minutes(n)) for n in range(3)]
    queued = await stores.accepted(at=T0 + minutes(3))
    await stores.inserted(OTHER, at=T0 + minutes(10))

    recent = await stores.reader.recent(since=T0, limit=3)

    assert [s.id for s in recent] == [queued.instance_id, ours[2].id, ours[1].id]
    assert [s.id for s in await stores.reader.recent(since=T0, limit=50)][-1] == ours[0].id


async def test_recent_carries_the_provision_time_and_the_reason(stores: Stores) -> None:
    running, failed = await stores.inserted(), await stores.inserted()
    async with stores.database.begin() as uow:
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(running.with_status(InstanceStatus.RUNNING))
        await uow.instances.get(failed.id, lock=True)
        await uow.instances.save(failed.with_status(InstanceStatus.FAILED, "boom"))
        await uow.commit()

    by_id = {s.id: s for s in await stores.reader.recent(since=T0, limit=50)}

    assert by_id[running.id].provision_seconds is not None
    assert (by_id[failed.id].status, by_id[failed.id].reason) == (InstanceStatus.FAILED, "boom")


async def test_timelines_are_the_events_of_each_of_ours_at_once(stores: Stores) -> None:
    failed, queued = await stores.inserted(), await stores.accepted()
    theirs = await stores.inserted(OTHER)
    async with stores.database.begin() as uow:
        await uow.instances.get(failed.id, lock=True)
        await uow.instances.save(failed.with_status(InstanceStatus.FAILED, "Hetzner: placement_error: no room"))
        await uow.commit()

    timelines = await stores.reader.timelines([failed.id, queued.instance_id, theirs.id, uuid.uuid4()])

    assert timelines == {
        failed.id: await stores.reader.events(failed.id),
        queued.instance_id: await stores.reader.events(queued.instance_id),
    }
    assert [e.status for e in timelines[failed.id]] == [
        InstanceStatus.QUEUED,
        InstanceStatus.PROVISIONING,
        InstanceStatus.FAILED,
    ]


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

    assert placement == Placement(Manifest("agent-default", "ubuntu-24.04"), "ash", "medium", "ash", "cpx32")


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
