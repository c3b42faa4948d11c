"""Units of work and their stores (ledger, instances, credentials): fake and PostgreSQL, one suite.

Every store is bound to one customer. Each test that reads also plants another customer's rows beside ours, and
asserts that they are neither seen nor changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from smoke.domain.errors import IdempotencyKeyReused, InstanceNotFound
from smoke.domain.models import Instance, InstanceStatus
from tests.contracts.conftest import OTHER, SCOPE, T0, Stores, minutes


async def test_an_accepted_entry_is_found_by_key_and_by_instance(stores: Stores) -> None:
    entry = await stores.accepted(key="ci-1")

    async with stores.database.begin() as uow:
        assert await uow.ledger.get("ci-1") == entry
        assert await uow.ledger.get_by_instance(entry.instance_id) == entry


async def test_another_customer_never_sees_an_entry_even_with_the_same_key(stores: Stores) -> None:
    ours = await stores.accepted(key="ci-1")
    theirs = await stores.accepted(OTHER, key="ci-1")

    async with stores.theirs.begin() as uow:
        assert await uow.ledger.get("ci-1") == theirs
        assert await uow.ledger.get_by_instance(ours.instance_id) is None
    async with stores.database.begin() as uow:
        assert await uow.ledger.get("ci-1") == ours
        assert await uow.ledger.get_by_instance(theirs.instance_id) is None


async def test_a_key_is_accepted_once(stores: Stores) -> None:
    entry = await stores.accepted(key="ci-1")

    async with stores.database.begin() as uow:
        with pytest.raises(IdempotencyKeyReused):
            await uow.ledger.add(dataclasses.replace(entry, instance_id=uuid.uuid4()))


async def test_live_entries_are_those_not_deleted_not_failed_or_not_inserted_yet(stores: Stores) -> None:
    await stores.accepted()
    running, failed, deleted = [await stores.inserted() for _ in range(3)]
    await stores.accepted(OTHER)
    await stores.inserted(OTHER)

    async with stores.database.begin() as uow:
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(running.with_status(InstanceStatus.RUNNING))
        await uow.instances.get(failed.id, lock=True)
        await uow.instances.save(failed.with_status(InstanceStatus.FAILED, "boom"))
        await uow.instances.get(deleted.id, lock=True)
        await uow.instances.save(deleted.soft_deleted(T0))
        await uow.commit()

    async with stores.database.begin() as uow:
        assert await uow.ledger.count_live() == 2


async def test_entries_without_an_instance_row_are_listed_once_old_enough(stores: Stores) -> None:
    lost = await stores.accepted(at=T0)
    await stores.accepted(at=T0 + minutes(10))
    await stores.inserted(at=T0)
    await stores.accepted(OTHER, at=T0)

    async with stores.database.begin() as uow:
        assert await uow.ledger.without_instance(T0 + minutes(5)) == [lost]


async def test_the_ledger_lock_serialises_units_of_work_until_they_end(stores: Stores) -> None:
    order: list[str] = []
    first_holds = asyncio.Event()

    async def first() -> None:
        async with stores.database.begin() as uow:
            await uow.ledger.lock()
            first_holds.set()
            await asyncio.sleep(0.05)
            order.append("first ends")

    async def second() -> None:
        await first_holds.wait()
        async with stores.database.begin() as uow:
            await uow.ledger.lock()
            order.append("second holds")

    await asyncio.gather(first(), second())

    assert order == ["first ends", "second holds"]


async def test_claim_inserts_once_and_then_returns_the_stored_row(stores: Stores) -> None:
    entry = await stores.accepted()
    deleted = Instance.new(entry, SCOPE, T0).soft_deleted(T0)

    async with stores.database.begin() as uow:
        first = await uow.instances.claim(deleted)
        second = await uow.instances.claim(Instance.new(entry, SCOPE, T0 + minutes(1)))
        await uow.commit()

    assert first == second == deleted
    assert await _statuses(stores, entry.instance_id) == [InstanceStatus.QUEUED, InstanceStatus.DELETING]


async def test_claiming_another_customers_instance_is_not_found_and_changes_nothing(stores: Stores) -> None:
    theirs = await stores.inserted(OTHER)

    async with stores.database.begin() as uow:
        with pytest.raises(InstanceNotFound):
            await uow.instances.claim(dataclasses.replace(theirs, customer_id=SCOPE.customer_id))

    async with stores.theirs.begin() as uow:
        assert await uow.instances.get(theirs.id) == theirs


async def test_save_stores_the_fields_and_records_status_changes_only(stores: Stores) -> None:
    instance = await stores.inserted()
    running = dataclasses.replace(instance, provider_server_id=42, ipv4="203.0.113.7").with_status(
        InstanceStatus.RUNNING
    )

    async with stores.database.begin() as uow:
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(running)
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(dataclasses.replace(running, ipv4="203.0.113.8"))
        await uow.commit()

    async with stores.database.begin() as uow:
        assert await uow.instances.get(instance.id) == dataclasses.replace(running, ipv4="203.0.113.8")
    assert await _statuses(stores, instance.id) == [
        InstanceStatus.QUEUED,
        InstanceStatus.PROVISIONING,
        InstanceStatus.RUNNING,
    ]


async def test_saving_another_customers_instance_is_not_found(stores: Stores) -> None:
    theirs = await stores.inserted(OTHER)

    async with stores.database.begin() as uow:
        assert await uow.instances.get(theirs.id, lock=True) is None
        with pytest.raises(InstanceNotFound):
            await uow.instances.save(theirs.with_status(InstanceStatus.FAILED, "not yours"))

    async with stores.theirs.begin() as uow:
        assert await uow.instances.get(theirs.id) == theirs


async def test_a_failure_reason_is_kept_in_the_history(stores: Stores) -> None:
    instance = await stores.inserted()

    async with stores.database.begin() as uow:
        await uow.instances.get(instance.id, lock=True)
        await uow.instances.save(instance.with_status(InstanceStatus.FAILED, "server never ran"))
        await uow.commit()

    events = await stores.reader.events(instance.id)
    assert events is not None
    assert events[-1].reason == "server never ran"


async def test_a_note_is_appended_once_under_the_current_status(stores: Stores) -> None:
    instance = await stores.inserted()

    for reason in ("retrying: rate limited", "retrying: rate limited", "retrying: conflict"):
        async with stores.database.begin() as uow:
            await uow.instances.get(instance.id, lock=True)
            await uow.instances.note(instance, reason)
            await uow.commit()

    events = await stores.reader.events(instance.id)
    assert [(c.status, c.reason) for c in events or []] == [
        (InstanceStatus.QUEUED, None),
        (InstanceStatus.PROVISIONING, None),
        (InstanceStatus.PROVISIONING, "retrying: rate limited"),
        (InstanceStatus.PROVISIONING, "retrying: conflict"),
    ]


async def test_get_of_an_unknown_or_another_customers_instance_is_none(stores: Stores) -> None:
    theirs = await stores.inserted(OTHER)

    async with stores.database.begin() as uow:
        assert await uow.instances.get(uuid.uuid4()) is None
        assert await uow.instances.get(theirs.id) is None


async def test_the_reconcile_queries_select_by_status_and_age_among_ours_only(stores: Stores) -> None:
    old = await stores.inserted(at=T0)
    young = await stores.inserted(at=T0 + minutes(30))
    deleting, failed, running = [await stores.inserted(at=T0) for _ in range(3)]
    for status in (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING, InstanceStatus.FAILED):
        theirs = await stores.inserted(OTHER, at=T0)
        async with stores.theirs.begin() as uow:
            await uow.instances.get(theirs.id, lock=True)
            await uow.instances.save(theirs.with_status(status))
            await uow.commit()
    theirs_deleting = await stores.inserted(OTHER, at=T0)
    async with stores.theirs.begin() as uow:
        await uow.instances.get(theirs_deleting.id, lock=True)
        await uow.instances.save(theirs_deleting.soft_deleted(T0))
        await uow.commit()
    async with stores.database.begin() as uow:
        await uow.instances.get(deleting.id, lock=True)
        await uow.instances.save(deleting.soft_deleted(T0))
        await uow.instances.get(failed.id, lock=True)
        await uow.instances.save(failed.with_status(InstanceStatus.FAILED))
        await uow.instances.get(running.id, lock=True)
        await uow.instances.save(running.with_status(InstanceStatus.RUNNING))
        await uow.commit()

    async with stores.database.begin() as uow:
        assert [i.id for i in await uow.instances.provisioning_since(T0 + minutes(10))] == [old.id]
        assert [i.id for i in await uow.instances.deleting()] == [deleting.id]
        assert {i.id for i in await uow.instances.expired(T0 + minutes(10))} == {old.id, failed.id, running.id}
        assert {i.id for i in await uow.instances.expecting_server()} == {old.id, young.id, running.id}
        assert await uow.instances.live_ids() == {old.id, young.id, running.id}


async def test_credentials_resolve_to_their_instance_until_revoked(stores: Stores) -> None:
    instance = await stores.inserted()
    async with stores.database.begin() as uow:
        await uow.credentials.add(instance.id, "a" * 64)
        await uow.commit()
    async with stores.database.begin() as uow:
        assert await uow.credentials.instance_for("a" * 64) == instance.id

    async with stores.database.begin() as uow:
        await uow.credentials.revoke(instance.id)
        await uow.credentials.revoke(instance.id)
        await uow.commit()

    async with stores.database.begin() as uow:
        assert await uow.credentials.instance_for("a" * 64) is None


async def test_adding_credentials_again_replaces_them(stores: Stores) -> None:
    instance = await stores.inserted()

    async with stores.database.begin() as uow:
        await uow.credentials.add(instance.id, "a" * 64)
        await uow.credentials.add(instance.id, "b" * 64)
        await uow.commit()

    async with stores.database.begin() as uow:
        assert await uow.credentials.instance_for("a" * 64) is None
        assert await uow.credentials.instance_for("b" * 64) == instance.id


async def test_another_customers_credentials_are_neither_found_nor_revoked(stores: Stores) -> None:
    theirs = await stores.inserted(OTHER)
    async with stores.theirs.begin() as uow:
        await uow.credentials.add(theirs.id, "c" * 64)
        await uow.commit()

    async with stores.database.begin() as uow:
        assert await uow.credentials.instance_for("c" * 64) is None
        await uow.credentials.revoke(theirs.id)
        await uow.commit()

    async with stores.theirs.begin() as uow:
        assert await uow.credentials.instance_for("c" * 64) == theirs.id


async def test_leaving_a_unit_of_work_without_commit_discards_its_writes(stores: Stores) -> None:
    instance = await stores.inserted()

    async with stores.database.begin() as uow:
        await uow.instances.get(instance.id, lock=True)
        await uow.instances.save(instance.with_status(InstanceStatus.RUNNING))
        await uow.credentials.add(instance.id, "d" * 64)
        await stores.accepted(key="committed-elsewhere")

    view = await stores.reader.view(instance.id)
    assert view is not None
    assert view.status is InstanceStatus.PROVISIONING
    async with stores.database.begin() as uow:
        assert await uow.credentials.instance_for("d" * 64) is None
        assert await uow.ledger.get("committed-elsewhere") is not None


async def test_an_exception_inside_a_unit_of_work_rolls_it_back(stores: Stores) -> None:
    instance = await stores.inserted()

    async def save_then_fail() -> None:
        async with stores.database.begin() as uow:
            await uow.instances.get(instance.id, lock=True)
            await uow.instances.save(instance.with_status(InstanceStatus.RUNNING))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await save_then_fail()

    view = await stores.reader.view(instance.id)
    assert view is not None
    assert view.status is InstanceStatus.PROVISIONING


async def test_readers_see_committed_state_only(stores: Stores) -> None:
    instance = await stores.inserted()

    async with stores.database.begin() as uow:
        await uow.instances.get(instance.id, lock=True)
        await uow.instances.save(instance.with_status(InstanceStatus.RUNNING))
        before = await stores.reader.view(instance.id)
        await uow.commit()
    after = await stores.reader.view(instance.id)

    assert (before and before.status, after and after.status) == (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)


async def _statuses(stores: Stores, instance_id: uuid.UUID) -> list[InstanceStatus]:
    return [event.status for event in await stores.reader.events(instance_id) or []]
