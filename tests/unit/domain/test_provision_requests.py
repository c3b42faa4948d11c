from __future__ import annotations

import asyncio

import pytest

from smoke.domain.errors import IdempotencyKeyReused, LiveInstanceCapReached, StorageUnavailable, UnknownCatalogEntry
from smoke.domain.models import InstanceStatus, provision_task_id
from smoke.domain.services import Provisioner, ProvisionRequests
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, SCOPE, a_request, plant_instance, plant_request


async def test_submit_records_the_request_durably_and_queues_its_provision_job(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    receipt = await requests.submit(a_request())

    assert receipt.task_id == provision_task_id(receipt.instance_id)
    assert fakes.db.entry(SCOPE.customer_id, "ci-run-1") is not None
    assert fakes.db.owners[receipt.instance_id] == SCOPE.customer_id
    assert fakes.queue.enqueued == [receipt.task_id]


async def test_same_key_and_body_returns_the_first_receipt_and_queues_nothing_new(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    first = await requests.submit(a_request())

    again = await requests.submit(a_request())

    assert again == first
    assert len(fakes.db.ledger) == 1
    assert fakes.queue.enqueued == [first.task_id]


async def test_concurrent_identical_requests_record_one_entry(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    receipts = await asyncio.gather(*(requests.submit(a_request()) for _ in range(20)))

    assert len(set(receipts)) == 1
    assert len(fakes.db.ledger) == 1


async def test_replay_requeues_a_provision_job_that_was_lost(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    first = await requests.submit(a_request())
    fakes.queue.finish(first.task_id)  # the job vanished before inserting the instance

    await requests.submit(a_request())

    assert fakes.queue.enqueued == [first.task_id, first.task_id]


async def test_a_request_whose_enqueue_failed_is_kept_and_queued_by_its_replay(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    fakes.queue.fail_next(StorageUnavailable("queue unavailable"))
    with pytest.raises(StorageUnavailable):
        await requests.submit(a_request())

    receipt = await requests.submit(a_request())

    assert fakes.queue.enqueued == [receipt.task_id]


async def test_same_key_with_another_body_is_refused(requests: ProvisionRequests) -> None:
    await requests.submit(a_request())

    with pytest.raises(IdempotencyKeyReused):
        await requests.submit(a_request(tier_id="large"))


async def test_unknown_catalog_id_names_the_field_and_records_nothing(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    with pytest.raises(UnknownCatalogEntry) as caught:
        await requests.submit(a_request(region_id="nowhere"))

    assert caught.value.field == "region_id"
    assert fakes.db.ledger == {}
    assert fakes.queue.enqueued == []


async def test_a_retired_catalog_id_is_refused_like_an_unknown_one(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    fakes.catalog.retired.add("small")

    with pytest.raises(UnknownCatalogEntry) as caught:
        await requests.submit(a_request())

    assert caught.value.field == "tier_id"


async def test_the_live_instance_cap_refuses_a_new_key_and_records_nothing(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    for n in range(3):
        await requests.submit(a_request(f"key-{n}"))

    with pytest.raises(LiveInstanceCapReached, match=r"^Live-instance cap reached: 3 smoke instances are not deleted"):
        await requests.submit(a_request("one-too-many"))

    assert len(fakes.db.ledger) == 3
    assert len(fakes.queue.enqueued) == 3


async def test_the_cap_holds_under_concurrent_requests(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    outcomes = await asyncio.gather(*(requests.submit(a_request(f"key-{n}")) for n in range(8)), return_exceptions=True)

    assert sum(isinstance(o, LiveInstanceCapReached) for o in outcomes) == 5
    assert len(fakes.db.ledger) == 3


async def test_the_cap_never_refuses_a_replay(requests: ProvisionRequests) -> None:
    receipts = [await requests.submit(a_request(f"key-{n}")) for n in range(3)]

    assert await requests.submit(a_request("key-0")) == receipts[0]


async def test_deleted_and_failed_instances_free_their_slot(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    plant_instance(fakes, deleted=True)
    plant_instance(fakes, status=InstanceStatus.FAILED)
    plant_request(fakes)

    await requests.submit(a_request("key-3"))
    await requests.submit(a_request("key-4"))

    with pytest.raises(LiveInstanceCapReached):
        await requests.submit(a_request("key-5"))


async def test_another_customers_requests_neither_count_against_the_cap_nor_answer_our_keys(
    requests: ProvisionRequests, fakes: FakeAdaptersProvider
) -> None:
    theirs = [plant_request(fakes, OTHER) for _ in range(5)]

    receipt = await requests.submit(a_request(theirs[0].idempotency_key))

    assert receipt.instance_id != theirs[0].instance_id
    assert all(fakes.db.ledger[entry.instance_id] == entry for entry in theirs)


async def test_replay_of_a_request_whose_instance_exists_queues_nothing(
    requests: ProvisionRequests, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    first = await requests.submit(a_request())
    await provisioner.provision(first.instance_id)
    fakes.queue.finish(first.task_id)

    await requests.submit(a_request())

    assert fakes.queue.enqueued == [first.task_id]
