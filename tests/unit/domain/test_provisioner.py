from __future__ import annotations

import pytest

from smoke.domain.errors import IdempotencyKeyReused, LiveInstanceCapReached, UnknownCatalogEntry
from smoke.domain.models import Instance, InstanceStatus, provision_task_id
from smoke.domain.services import Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, a_request


async def test_submit_records_the_request_and_queues_its_provision_job(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    receipt = await provisioner.submit(a_request())

    assert receipt.task_id == provision_task_id(receipt.instance_id)
    assert fakes.db.ledger[SCOPE.customer_id, "ci-run-1"].instance_id == receipt.instance_id
    assert fakes.queue.enqueued == [receipt.task_id]
    assert fakes.uow.commits == 1


async def test_same_key_and_body_returns_the_first_receipt_and_queues_nothing_new(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    first = await provisioner.submit(a_request())

    again = await provisioner.submit(a_request())

    assert again == first
    assert len(fakes.db.ledger) == 1
    assert fakes.queue.enqueued == [first.task_id]


async def test_replay_requeues_a_provision_job_that_was_lost(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    first = await provisioner.submit(a_request())
    fakes.queue.finish(first.task_id)  # the job vanished before inserting the instance

    await provisioner.submit(a_request())

    assert fakes.queue.enqueued == [first.task_id, first.task_id]


async def test_replay_of_a_request_whose_instance_exists_queues_nothing(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    first = await provisioner.submit(a_request())
    fakes.queue.finish(first.task_id)
    entry = fakes.db.ledger[SCOPE.customer_id, "ci-run-1"]
    await fakes.instances.claim(Instance.new(entry, SCOPE, fakes.db.clock.now()))

    await provisioner.submit(a_request())

    assert fakes.queue.enqueued == [first.task_id]


async def test_same_key_with_another_body_is_refused(provisioner: Provisioner) -> None:
    await provisioner.submit(a_request())

    with pytest.raises(IdempotencyKeyReused):
        await provisioner.submit(a_request(tier_id="large"))


async def test_unknown_catalog_id_names_the_field_and_records_nothing(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    with pytest.raises(UnknownCatalogEntry) as caught:
        await provisioner.submit(a_request(region_id="nowhere"))

    assert caught.value.field == "region_id"
    assert fakes.db.ledger == {}
    assert fakes.queue.enqueued == []


async def test_the_live_instance_cap_refuses_a_new_key_and_records_nothing(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    for n in range(3):
        await provisioner.submit(a_request(f"key-{n}"))

    with pytest.raises(LiveInstanceCapReached):
        await provisioner.submit(a_request("one-too-many"))

    assert len(fakes.db.ledger) == 3
    assert len(fakes.queue.enqueued) == 3


async def test_the_cap_never_refuses_a_replay(provisioner: Provisioner) -> None:
    receipts = [await provisioner.submit(a_request(f"key-{n}")) for n in range(3)]

    assert await provisioner.submit(a_request("key-0")) == receipts[0]


async def test_deleted_and_failed_instances_free_their_slot(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    for n in range(3):
        await provisioner.submit(a_request(f"key-{n}"))
    now = fakes.db.clock.now()
    entries = list(fakes.db.ledger.values())
    await fakes.instances.claim(Instance.new(entries[0], SCOPE, now).soft_deleted(now))
    await fakes.instances.claim(Instance.new(entries[1], SCOPE, now).with_status(InstanceStatus.FAILED))

    await provisioner.submit(a_request("key-3"))
    await provisioner.submit(a_request("key-4"))

    with pytest.raises(LiveInstanceCapReached):
        await provisioner.submit(a_request("key-5"))
