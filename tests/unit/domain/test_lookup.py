from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import Instance, InstanceStatus, PollResult
from smoke.domain.services import InstanceLookup, Provisioner, ProvisionRequests
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, a_request, plant_instance, plant_request


async def test_poll_is_not_found_until_the_instance_row_exists(
    lookup: InstanceLookup, requests: ProvisionRequests, provisioner: Provisioner
) -> None:
    receipt = await requests.submit(a_request())
    assert await lookup.poll("ci-run-1") == PollResult(found=False)

    await provisioner.provision(receipt.instance_id)

    assert await lookup.poll("ci-run-1") == PollResult(True, receipt.instance_id, InstanceStatus.RUNNING)


async def test_poll_of_a_key_never_seen_is_not_found(lookup: InstanceLookup) -> None:
    assert await lookup.poll("never-seen") == PollResult(found=False)


async def test_status_of_an_accepted_request_not_inserted_yet_is_queued_with_its_future_hostname(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)

    view = await lookup.status(entry.instance_id)

    assert (view.hostname, view.status) == (Instance.hostname_for(entry.instance_id), InstanceStatus.QUEUED)


async def test_status_of_an_unknown_or_another_customers_instance_is_not_found(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    for instance_id in (uuid.uuid4(), plant_instance(fakes, OTHER).id, plant_request(fakes, OTHER).instance_id):
        with pytest.raises(InstanceNotFound):
            await lookup.status(instance_id)


async def test_events_start_with_the_accepted_request_and_say_why_it_failed(
    lookup: InstanceLookup, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)
    fakes.cloud.polls_until_running = 10_000

    await provisioner.provision(entry.instance_id)

    events = await lookup.events(entry.instance_id)
    assert [(e.status, e.reason) for e in events] == [
        (InstanceStatus.QUEUED, None),
        (InstanceStatus.PROVISIONING, None),
        (InstanceStatus.FAILED, "not running after 60 s"),
    ]
    assert events[0].created_at == entry.created_at


async def test_events_of_another_customers_instance_are_not_found(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    with pytest.raises(InstanceNotFound):
        await lookup.events(plant_instance(fakes, OTHER).id)


async def test_the_list_is_newest_first_and_pages_with_its_cursor(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    start = fakes.db.clock.now()
    ours = [plant_instance(fakes, at=start + timedelta(seconds=n)).id for n in range(5)]
    plant_instance(fakes, OTHER, at=start + timedelta(seconds=10))

    first = await lookup.page(limit=2)
    second = await lookup.page(limit=2, before=first.next_before)
    last = await lookup.page(limit=2, before=second.next_before)

    pages = [[s.id for s in page.instances] for page in (first, second, last)]
    assert pages == [ours[4:2:-1], ours[2:0:-1], ours[0:1]]
    assert last.next_before is None


async def test_the_list_filters_by_status_and_shows_queued_requests(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    queued = plant_request(fakes)
    plant_instance(fakes)

    page = await lookup.page(status=InstanceStatus.QUEUED)

    assert [(s.id, s.status) for s in page.instances] == [(queued.instance_id, InstanceStatus.QUEUED)]


async def test_a_listed_instance_says_how_long_it_took_to_run(
    lookup: InstanceLookup, requests: ProvisionRequests, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    receipt = await requests.submit(a_request())
    fakes.db.clock.advance(7)
    await provisioner.provision(receipt.instance_id)

    [summary] = (await lookup.page()).instances

    assert (summary.status, summary.provision_seconds) == (InstanceStatus.RUNNING, 7.0)


async def test_a_page_holds_fifty_instances_unless_asked_otherwise(
    lookup: InstanceLookup, fakes: FakeAdaptersProvider
) -> None:
    for n in range(51):
        plant_instance(fakes, at=fakes.db.clock.now() + timedelta(seconds=n))

    page = await lookup.page()

    assert len(page.instances) == 50
    assert page.next_before is not None
