from __future__ import annotations

import uuid

import pytest

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import InstanceStatus, cleanup_task_id
from smoke.domain.services import Deleter
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, plant_instance, plant_request


async def test_delete_applies_the_soft_delete_recipe_and_queues_the_cleanup(
    deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes)
    fakes.db.credentials[instance.id] = "digest"

    receipt = await deleter.delete(instance.id)

    deleted = fakes.db.instances[instance.id]
    assert receipt.status is InstanceStatus.DELETING
    assert deleted.status is InstanceStatus.DELETING
    assert deleted.deleted_at == fakes.db.clock.now()
    assert deleted.hostname == f"{instance.hostname}-deleted-{int(fakes.db.clock.now().timestamp())}"
    assert instance.id not in fakes.db.credentials
    assert cleanup_task_id(instance.id) in fakes.queue.pending


async def test_delete_keeps_the_status_history(deleter: Deleter, fakes: FakeAdaptersProvider) -> None:
    instance = plant_instance(fakes)
    fakes.db.history.clear()

    await deleter.delete(instance.id)

    assert [(c.instance_id, c.status) for c in fakes.db.history] == [(instance.id, InstanceStatus.DELETING)]


async def test_repeating_delete_answers_the_current_status_and_queues_nothing(
    deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes)
    await deleter.delete(instance.id)
    queued = list(fakes.queue.enqueued)
    fakes.db.clock.advance(5)

    receipt = await deleter.delete(instance.id)

    assert (receipt.instance_id, receipt.status) == (instance.id, InstanceStatus.DELETING)
    assert fakes.queue.enqueued == queued
    assert fakes.db.instances[instance.id].hostname.endswith(str(int(fakes.db.clock.now().timestamp()) - 5))


async def test_delete_before_the_worker_inserted_the_row_inserts_it_already_deleted(
    deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)

    fakes.db.clock.advance(5)
    await deleter.delete(entry.instance_id)

    inserted = fakes.db.instances[entry.instance_id]
    assert inserted.is_deleted
    assert inserted.created_at == fakes.db.clock.now()
    assert cleanup_task_id(entry.instance_id) in fakes.queue.pending


async def test_delete_of_an_unknown_instance_is_not_found(deleter: Deleter) -> None:
    with pytest.raises(InstanceNotFound):
        await deleter.delete(uuid.uuid4())


async def test_delete_of_another_customers_instance_is_not_found_and_changes_nothing(
    deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    theirs = plant_instance(fakes, OTHER)

    with pytest.raises(InstanceNotFound):
        await deleter.delete(theirs.id)

    assert fakes.db.instances[theirs.id] == theirs
    assert fakes.queue.enqueued == []
