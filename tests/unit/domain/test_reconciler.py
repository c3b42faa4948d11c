from __future__ import annotations

import pytest

from smoke.domain.models import InstanceStatus, ServerSpec, cleanup_task_id, provision_task_id
from smoke.domain.services import Cleaner, InstanceBuilder, Provisioner, ReconcilePolicy, Reconciler
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import a_request


@pytest.fixture
def reconciler(fakes: FakeAdaptersProvider, builder: InstanceBuilder, cleaner: Cleaner) -> Reconciler:
    return Reconciler(
        policy=ReconcilePolicy(provision_timeout_seconds=600, instance_ttl_seconds=3600),
        ledger=fakes.ledger,
        instances=fakes.instances,
        cloud=fakes.cloud,
        queue=fakes.queue,
        uow=fakes.uow,
        clock=fakes.db.clock,
        builder=builder,
        cleaner=cleaner,
    )


async def test_a_request_whose_job_was_lost_is_queued_again(
    reconciler: Reconciler, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    receipt = await provisioner.submit(a_request())
    fakes.queue.finish(receipt.task_id)
    fakes.db.clock.advance(61)

    report = await reconciler.reconcile()

    assert report.requeued_provisions == 1
    assert provision_task_id(receipt.instance_id) in fakes.queue.pending


async def test_a_provision_past_its_timeout_fails_and_loses_its_server(
    reconciler: Reconciler, provisioner: Provisioner, builder: InstanceBuilder, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    fakes.cloud.polls_until_running = 10_000
    await builder._claim(instance_id)  # the worker died right after inserting the row
    await builder._record_server(instance_id, await builder._server_of(fakes.db.instances[instance_id]))
    fakes.db.clock.advance(601)

    report = await reconciler.reconcile()

    assert report.failed_provisions == 1
    assert fakes.db.instances[instance_id].status is InstanceStatus.FAILED
    assert fakes.cloud.servers == {}


async def test_a_deleting_instance_gets_its_cleanup_queued_again(
    reconciler: Reconciler, provisioner: Provisioner, cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await cleaner.delete(instance_id)
    fakes.queue.finish(cleanup_task_id(instance_id))

    await reconciler.reconcile()

    assert cleanup_task_id(instance_id) in fakes.queue.pending


async def test_an_instance_past_its_ttl_is_soft_deleted(
    reconciler: Reconciler, provisioner: Provisioner, builder: InstanceBuilder, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await builder.build(instance_id)
    fakes.db.clock.advance(3601)

    report = await reconciler.reconcile()

    assert report.expired_instances == 1
    assert fakes.db.instances[instance_id].status is InstanceStatus.DELETING
    assert cleanup_task_id(instance_id) in fakes.queue.pending


async def test_a_server_of_no_live_instance_is_deleted_and_live_ones_are_kept(
    reconciler: Reconciler, provisioner: Provisioner, builder: InstanceBuilder, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await builder.build(instance_id)
    labels = {"managed-by": "smoke", "smoke-instance-id": "00000000-0000-4000-8000-000000000000"}
    orphan = await fakes.cloud.create_server(ServerSpec("orphan", "cpx22", "ubuntu-24.04", "fsn1", labels, ""))
    unrelated = await fakes.cloud.create_server(ServerSpec("theirs", "cpx22", "ubuntu-24.04", "fsn1", {}, ""))

    report = await reconciler.reconcile()

    assert report.orphans_deleted == 1
    assert orphan.id not in fakes.cloud.servers
    assert unrelated.id in fakes.cloud.servers
    assert fakes.db.instances[instance_id].provider_server_id in fakes.cloud.servers


async def test_reconcile_of_a_quiet_system_changes_nothing(
    reconciler: Reconciler, provisioner: Provisioner, builder: InstanceBuilder, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await builder.build(instance_id)
    before = dict(fakes.db.instances)

    await reconciler.reconcile()

    assert fakes.db.instances == before
    assert len(fakes.cloud.servers) == 1
