"""ProvisionLedger, InstanceRepository and AgentCredentialStore: fake and PostgreSQL, one suite."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from smoke.domain.errors import IdempotencyKeyReused
from smoke.domain.models import Instance, InstanceStatus
from smoke.testing import FakeUnitOfWork
from tests.contracts.conftest import OTHER, SCOPE, T0, Stores, minutes


async def test_an_accepted_entry_is_found_by_key_and_by_instance(stores: Stores) -> None:
    entry = await stores.accepted(key="ci-1")

    assert await stores.ledger.get(SCOPE.customer_id, "ci-1") == entry
    assert await stores.ledger.get_by_instance(SCOPE.customer_id, entry.instance_id) == entry


async def test_another_customer_never_sees_an_entry(stores: Stores) -> None:
    entry = await stores.accepted(key="ci-1")

    assert await stores.ledger.get(OTHER.customer_id, "ci-1") is None
    assert await stores.ledger.get_by_instance(OTHER.customer_id, entry.instance_id) is None


async def test_a_key_is_accepted_once(stores: Stores) -> None:
    entry = await stores.accepted(key="ci-1")

    with pytest.raises(IdempotencyKeyReused):
        await stores.ledger.add(dataclasses.replace(entry, instance_id=uuid.uuid4()))


async def test_live_entries_are_those_not_deleted_not_failed_or_not_inserted_yet(stores: Stores) -> None:
    await stores.accepted()
    running = await stores.inserted()
    await stores.instances.save(running.with_status(InstanceStatus.RUNNING))
    failed = await stores.inserted()
    await stores.instances.save(failed.with_status(InstanceStatus.FAILED, "boom"))
    deleted = await stores.inserted()
    await stores.instances.save(deleted.soft_deleted(T0))
    await stores.accepted(OTHER)
    await stores.uow.commit()

    assert await stores.ledger.count_live(SCOPE.customer_id) == 2


async def test_entries_without_an_instance_row_are_listed_once_old_enough(stores: Stores) -> None:
    lost = await stores.accepted(at=T0)
    await stores.accepted(at=T0 + minutes(10))
    await stores.inserted(at=T0)

    assert await stores.ledger.without_instance(T0 + minutes(5)) == [lost]


async def test_claim_inserts_once_and_then_returns_the_stored_row(stores: Stores) -> None:
    entry = await stores.accepted()
    deleted = Instance.new(entry, SCOPE, T0).soft_deleted(T0)

    first = await stores.instances.claim(deleted)
    second = await stores.instances.claim(Instance.new(entry, SCOPE, T0 + minutes(1)))
    await stores.uow.commit()

    assert first == second == deleted
    assert [c.status for c in await stores.instances.history(entry.instance_id)] == [InstanceStatus.DELETING]


async def test_save_stores_the_fields_and_records_status_changes_only(stores: Stores) -> None:
    instance = await stores.inserted()
    running = dataclasses.replace(instance, provider_server_id=42, ipv4="203.0.113.7").with_status(
        InstanceStatus.RUNNING
    )

    await stores.instances.save(running)
    await stores.instances.save(dataclasses.replace(running, ipv4="203.0.113.8"))
    await stores.uow.commit()

    assert await stores.instances.get(instance.id) == dataclasses.replace(running, ipv4="203.0.113.8")
    history = await stores.instances.history(instance.id)
    assert [c.status for c in history] == [InstanceStatus.PROVISIONING, InstanceStatus.RUNNING]


async def test_a_failure_reason_is_kept_in_the_history(stores: Stores) -> None:
    instance = await stores.inserted()

    await stores.instances.save(instance.with_status(InstanceStatus.FAILED, "server never ran"))
    await stores.uow.commit()

    assert (await stores.instances.history(instance.id))[-1].reason == "server never ran"


async def test_get_of_an_unknown_instance_is_none(stores: Stores) -> None:
    assert await stores.instances.get(uuid.uuid4()) is None


async def test_the_reconcile_queries_select_by_status_and_age(stores: Stores) -> None:
    old = await stores.inserted(at=T0)
    young = await stores.inserted(at=T0 + minutes(30))
    deleting = await stores.inserted(at=T0)
    await stores.instances.save(deleting.soft_deleted(T0))
    failed = await stores.inserted(at=T0)
    await stores.instances.save(failed.with_status(InstanceStatus.FAILED))
    await stores.uow.commit()

    assert [i.id for i in await stores.instances.provisioning_since(T0 + minutes(10))] == [old.id]
    assert [i.id for i in await stores.instances.deleting()] == [deleting.id]
    assert {i.id for i in await stores.instances.expired(T0 + minutes(10))} == {old.id, failed.id}
    assert await stores.instances.live_ids() == {old.id, young.id}


async def test_credentials_resolve_to_their_instance_until_revoked(stores: Stores) -> None:
    instance = await stores.inserted()
    await stores.credentials.add(instance.id, "a" * 64)
    await stores.uow.commit()
    assert await stores.credentials.instance_for("a" * 64) == instance.id

    await stores.credentials.revoke(instance.id)
    await stores.credentials.revoke(instance.id)
    await stores.uow.commit()

    assert await stores.credentials.instance_for("a" * 64) is None


async def test_adding_credentials_again_replaces_them(stores: Stores) -> None:
    instance = await stores.inserted()

    await stores.credentials.add(instance.id, "a" * 64)
    await stores.credentials.add(instance.id, "b" * 64)
    await stores.uow.commit()

    assert await stores.credentials.instance_for("a" * 64) is None
    assert await stores.credentials.instance_for("b" * 64) == instance.id


async def test_uncommitted_writes_are_discarded_by_rollback(stores: Stores) -> None:
    instance = await stores.inserted()
    await stores.instances.save(instance.with_status(InstanceStatus.RUNNING))

    await stores.uow.rollback()

    if isinstance(stores.uow, FakeUnitOfWork):
        pytest.skip("the fakes model committed state only")
    view = await stores.reader.view(SCOPE.customer_id, instance.id)
    assert view is not None
    assert view.status is InstanceStatus.PROVISIONING
