from __future__ import annotations

import uuid

import pytest

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import CustomerScope, Instance, InstanceStatus, cleanup_task_id
from smoke.domain.services import Cleaner, Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, a_request


async def _running_instance(provisioner: Provisioner, fakes: FakeAdaptersProvider) -> Instance:
    receipt = await provisioner.submit(a_request())
    entry = fakes.db.ledger[SCOPE.customer_id, "ci-run-1"]
    instance = await fakes.instances.claim(Instance.new(entry, SCOPE, fakes.db.clock.now()))
    await fakes.instances.save(instance.with_status(InstanceStatus.RUNNING))
    await fakes.credentials.add(receipt.instance_id, "digest")
    return instance


async def test_delete_applies_the_soft_delete_recipe_and_queues_the_cleanup(
    cleaner: Cleaner, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance = await _running_instance(provisioner, fakes)

    receipt = await cleaner.delete(instance.id)

    deleted = fakes.db.instances[instance.id]
    assert receipt.status is InstanceStatus.DELETING
    assert deleted.status is InstanceStatus.DELETING
    assert deleted.deleted_at == fakes.db.clock.now()
    assert deleted.hostname == f"{instance.hostname}-deleted-{int(fakes.db.clock.now().timestamp())}"
    assert instance.id not in fakes.db.credentials
    assert cleanup_task_id(instance.id) in fakes.queue.pending


async def test_delete_keeps_the_status_history(
    cleaner: Cleaner, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance = await _running_instance(provisioner, fakes)

    await cleaner.delete(instance.id)

    statuses = [change.status for change in await fakes.instances.history(instance.id)]
    assert statuses == [InstanceStatus.PROVISIONING, InstanceStatus.RUNNING, InstanceStatus.DELETING]


async def test_repeating_delete_answers_the_current_status_and_queues_nothing(
    cleaner: Cleaner, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance = await _running_instance(provisioner, fakes)
    await cleaner.delete(instance.id)
    queued = list(fakes.queue.enqueued)
    fakes.db.clock.advance(5)

    receipt = await cleaner.delete(instance.id)

    assert receipt.status is InstanceStatus.DELETING
    assert fakes.queue.enqueued == queued
    assert fakes.db.instances[instance.id].hostname.endswith(str(int(fakes.db.clock.now().timestamp()) - 5))


async def test_delete_before_the_worker_inserted_the_row_inserts_it_already_deleted(
    cleaner: Cleaner, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    receipt = await provisioner.submit(a_request())

    await cleaner.delete(receipt.instance_id)

    assert fakes.db.instances[receipt.instance_id].is_deleted
    assert cleanup_task_id(receipt.instance_id) in fakes.queue.pending


async def test_delete_of_an_unknown_instance_is_not_found(cleaner: Cleaner) -> None:
    with pytest.raises(InstanceNotFound):
        await cleaner.delete(uuid.uuid4())


async def test_delete_of_another_customers_instance_is_not_found(cleaner: Cleaner, fakes: FakeAdaptersProvider) -> None:
    other = CustomerScope(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    theirs = Provisioner(
        scope=other,
        max_live_instances=3,
        ledger=fakes.ledger,
        catalog=fakes.catalog,
        reader=fakes.reader,
        queue=fakes.queue,
        uow=fakes.uow,
        clock=fakes.db.clock,
    )
    receipt = await theirs.submit(a_request())

    with pytest.raises(InstanceNotFound):
        await cleaner.delete(receipt.instance_id)
