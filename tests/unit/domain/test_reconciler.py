from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from smoke.domain.errors import CloudError, StorageUnavailable
from smoke.domain.models import InstanceStatus, ServerSpec, cleanup_task_id, provision_task_id
from smoke.domain.services import Deleter, Provisioner, Reconciler
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, SCOPE, plant_instance, plant_request

LONG_AGO = timedelta(days=3)


async def test_a_request_whose_job_was_lost_is_queued_again(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)
    fakes.db.clock.advance(61)

    report = await reconciler.reconcile()

    assert report.requeued_provisions == 1
    assert provision_task_id(entry.instance_id) in fakes.queue.pending


async def test_a_provision_past_its_timeout_fails_and_loses_its_server(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes, status=InstanceStatus.PROVISIONING)
    fakes.db.clock.advance(601)

    report = await reconciler.reconcile()

    assert report.failed_provisions == 1
    assert fakes.db.instances[instance.id].status is InstanceStatus.FAILED
    assert fakes.cloud.servers == {}


async def test_a_deleting_instance_gets_its_cleanup_queued_again(
    reconciler: Reconciler, deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes)
    await deleter.delete(instance.id)
    fakes.queue.finish(cleanup_task_id(instance.id))

    await reconciler.reconcile()

    assert cleanup_task_id(instance.id) in fakes.queue.pending


async def test_an_instance_past_its_ttl_is_soft_deleted(reconciler: Reconciler, fakes: FakeAdaptersProvider) -> None:
    instance = plant_instance(fakes)
    fakes.db.clock.advance(3601)

    report = await reconciler.reconcile()

    assert report.expired_instances == 1
    assert fakes.db.instances[instance.id].status is InstanceStatus.DELETING
    assert cleanup_task_id(instance.id) in fakes.queue.pending


async def test_a_server_of_no_live_instance_is_deleted_and_live_ones_are_kept(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    live = plant_instance(fakes)
    failed = plant_instance(fakes, status=InstanceStatus.FAILED)
    labels = {
        "managed-by": "smoke",
        "smoke-instance-id": str(uuid.uuid4()),
        "smoke-customer-id": str(SCOPE.customer_id),
    }
    orphan = fakes.cloud.add_server(ServerSpec("orphan", "cpx22", "ubuntu-24.04", "fsn1", labels, ""))
    unrelated = fakes.cloud.add_server(ServerSpec("theirs", "cpx22", "ubuntu-24.04", "fsn1", {}, ""))

    report = await reconciler.reconcile()

    assert report.orphans_deleted == 2
    assert set(fakes.cloud.servers) == {live.provider_server_id, unrelated.id}
    assert failed.provider_server_id not in fakes.cloud.servers
    assert orphan.id not in fakes.cloud.servers


async def test_a_server_from_before_the_customer_label_is_collected_by_its_instance_id(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    ours = plant_instance(fakes, status=InstanceStatus.FAILED, with_server=False)
    legacy = {"managed-by": "smoke", "smoke-instance-id": str(ours.id)}
    server = fakes.cloud.add_server(ServerSpec(ours.hostname, "cpx22", "ubuntu-24.04", "fsn1", legacy, ""))
    strangers = {"managed-by": "smoke", "smoke-instance-id": str(uuid.uuid4())}
    stranger = fakes.cloud.add_server(ServerSpec("stranger", "cpx22", "ubuntu-24.04", "fsn1", strangers, ""))

    await reconciler.reconcile()

    assert server.id not in fakes.cloud.servers
    assert stranger.id in fakes.cloud.servers  # another deployment's, from before the label: not ours to judge


async def test_a_server_deleted_behind_our_back_fails_its_running_instance_as_a_ghost(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes)
    other = plant_instance(fakes)
    assert instance.provider_server_id is not None
    del fakes.cloud.servers[instance.provider_server_id]

    report = await reconciler.reconcile()

    assert report.ghosts_failed == 1
    gone = fakes.db.instances[instance.id]
    assert (gone.status, gone.failure_reason) == (InstanceStatus.FAILED, "server gone")
    assert fakes.db.instances[other.id].status is InstanceStatus.RUNNING
    assert not fakes.db.is_live(instance.id)


async def test_one_failing_item_never_stops_the_rest_of_the_pass(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    orphans = []
    for n in range(3):
        labels = {
            "managed-by": "smoke",
            "smoke-instance-id": str(uuid.uuid4()),
            "smoke-customer-id": str(SCOPE.customer_id),
        }
        orphans.append(fakes.cloud.add_server(ServerSpec(f"orphan-{n}", "cpx22", "ubuntu-24.04", "fsn1", labels, "")))
    expired = plant_instance(fakes, at=fakes.db.clock.now() - LONG_AGO)
    fakes.cloud.fail_next("delete_server", CloudError("protected", "the server is delete-protected"))

    report = await reconciler.reconcile()

    assert (report.orphans_deleted, report.errors, report.expired_instances) == (3, 1, 1)
    assert list(fakes.cloud.servers) == [orphans[0].id]  # the expired instance's server went in the same pass
    assert fakes.db.instances[expired.id].is_deleted


async def test_a_cloud_that_cannot_list_servers_does_not_stop_the_database_steps(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    expired = plant_instance(fakes, at=fakes.db.clock.now() - LONG_AGO)
    fakes.cloud.fail_next("find_servers", CloudError("unauthorized", "unable to authenticate"))

    report = await reconciler.reconcile()

    assert report.expired_instances == 1
    assert report.errors == 1
    assert fakes.db.instances[expired.id].is_deleted


async def test_reconcile_of_a_quiet_system_changes_nothing(
    reconciler: Reconciler, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    entry = plant_request(fakes)
    await provisioner.provision(entry.instance_id)
    before = dict(fakes.db.instances)

    await reconciler.reconcile()

    assert fakes.db.instances == before
    assert len(fakes.cloud.servers) == 1


async def test_another_customers_rows_and_servers_are_left_exactly_as_they_were(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    old = fakes.db.clock.now() - LONG_AGO
    plant_request(fakes, OTHER, at=old)  # a request with no instance row: "lost" if it were ours
    plant_instance(fakes, OTHER, status=InstanceStatus.RUNNING, at=old)  # past any TTL
    plant_instance(fakes, OTHER, status=InstanceStatus.PROVISIONING, at=old)  # past any provision timeout
    plant_instance(fakes, OTHER, status=InstanceStatus.FAILED, at=old)  # its server would be an orphan if ours
    plant_instance(fakes, OTHER, status=InstanceStatus.DELETING, deleted=True, at=old)
    ghost = plant_instance(fakes, OTHER, status=InstanceStatus.RUNNING, at=old)  # its server gone
    assert ghost.provider_server_id is not None
    del fakes.cloud.servers[ghost.provider_server_id]
    rows, servers = dict(fakes.db.instances), dict(fakes.cloud.servers)
    ledger, history = dict(fakes.db.ledger), list(fakes.db.history)

    report = await reconciler.reconcile()

    assert dataclasses.asdict(report) == dict.fromkeys(dataclasses.asdict(report), 0)
    assert (fakes.db.instances, fakes.cloud.servers) == (rows, servers)
    assert (fakes.db.ledger, fakes.db.history) == (ledger, history)
    assert fakes.queue.enqueued == []


async def test_only_requests_older_than_the_grace_count_as_lost_each_counted(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    now = fakes.db.clock.now()
    lost = [plant_request(fakes, at=now - timedelta(seconds=61)) for _ in range(2)]
    fresh = plant_request(fakes, at=now - timedelta(seconds=30))

    report = await reconciler.reconcile()

    assert report.requeued_provisions == 2
    assert set(fakes.queue.pending) == {provision_task_id(e.instance_id) for e in lost}
    assert provision_task_id(fresh.instance_id) not in fakes.queue.pending


async def test_young_provisions_get_their_job_again_and_stale_ones_fail_each_counted(
    reconciler: Reconciler, fakes: FakeAdaptersProvider
) -> None:
    now = fakes.db.clock.now()
    young = plant_instance(fakes, status=InstanceStatus.PROVISIONING, at=now - timedelta(seconds=59))
    stale = [plant_instance(fakes, status=InstanceStatus.PROVISIONING, at=now - timedelta(seconds=61)) for _ in "ab"]

    report = await reconciler.reconcile()

    assert report.failed_provisions == 2
    assert [fakes.db.instances[i.id].failure_reason for i in stale] == ["not running after 60 s"] * 2
    assert fakes.db.instances[young.id].status is InstanceStatus.PROVISIONING
    assert provision_task_id(young.id) in fakes.queue.pending


async def test_expired_and_deleting_instances_are_each_counted(
    reconciler: Reconciler, deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    for _ in range(2):
        plant_instance(fakes, at=fakes.db.clock.now() - LONG_AGO)
    for _ in range(3):
        await deleter.delete(plant_instance(fakes).id)
    fakes.queue.pending.clear()

    report = await reconciler.reconcile()

    assert (report.expired_instances, report.requeued_cleanups) == (2, 5)


async def test_a_queue_that_fails_costs_one_line_and_one_error_per_item(
    reconciler: Reconciler, fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    entry = plant_request(fakes, at=fakes.db.clock.now() - LONG_AGO)
    other = plant_request(fakes, at=fakes.db.clock.now() - LONG_AGO)
    fakes.queue.fail_next(StorageUnavailable("queue unavailable: ConnectionError"))

    report = await reconciler.reconcile()

    assert (report.errors, report.requeued_provisions) == (1, 1)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconcile could not")]
    assert line in {
        f"reconcile could not re-queue provision {i}: queue unavailable: ConnectionError"
        for i in (entry.instance_id, other.instance_id)
    }


async def test_a_step_that_cannot_read_is_one_line_and_the_pass_goes_on(
    reconciler: Reconciler, fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="smoke.reconcile")
    fakes.cloud.fail_next("find_servers", CloudError("unauthorized", "unable to authenticate", provider="Hetzner"))

    report = await reconciler.reconcile()

    assert report.errors == 1
    assert "reconcile could not collect orphans and ghosts: unable to authenticate (unauthorized)" in [
        r.getMessage() for r in caplog.records
    ]
    assert caplog.records[-1].getMessage() == f"reconciled: {report}"
