from __future__ import annotations

import dataclasses
import uuid

import pytest

from smoke.domain.errors import CloudError, CloudTransientError
from smoke.domain.models import InstanceStatus, ServerSpec
from smoke.domain.services import Cleaner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, plant_instance


async def test_clean_deletes_the_server_and_marks_the_instance_deleted(
    cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes, status=InstanceStatus.RUNNING, deleted=True)

    assert await cleaner.clean(instance.id) is InstanceStatus.DELETED

    assert fakes.cloud.servers == {}
    assert fakes.db.instances[instance.id].status is InstanceStatus.DELETED


async def test_a_server_already_gone_counts_as_done(cleaner: Cleaner, fakes: FakeAdaptersProvider) -> None:
    instance = plant_instance(fakes, deleted=True)
    fakes.cloud.servers.clear()

    assert await cleaner.clean(instance.id) is InstanceStatus.DELETED
    assert await cleaner.clean(instance.id) is InstanceStatus.DELETED


async def test_a_refusing_cloud_is_raised_for_a_retry_and_said_in_the_events(
    cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes, deleted=True)
    fakes.cloud.fail_next("delete_server", CloudTransientError("locked", "an action is running", provider="Hetzner"), 2)

    for _ in range(2):
        with pytest.raises(CloudError):
            await cleaner.clean(instance.id)
    assert await cleaner.clean(instance.id) is InstanceStatus.DELETED

    reasons = [c.reason for c in fakes.db.history if c.instance_id == instance.id]
    assert reasons == ["cleanup failed, retrying: Hetzner: locked: an action is running", None]


async def test_an_instance_not_soft_deleted_is_left_alone(cleaner: Cleaner, fakes: FakeAdaptersProvider) -> None:
    instance = plant_instance(fakes)

    assert await cleaner.clean(instance.id) is InstanceStatus.RUNNING
    assert len(fakes.cloud.servers) == 1


async def test_an_unknown_instance_is_nothing_to_do(cleaner: Cleaner) -> None:
    assert await cleaner.clean(uuid.uuid4()) is None


async def test_another_customers_deleting_instance_is_never_cleaned(
    cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    theirs = plant_instance(fakes, OTHER, deleted=True)

    assert await cleaner.clean(theirs.id) is None
    assert theirs.provider_server_id in fakes.cloud.servers
    assert fakes.db.instances[theirs.id] == theirs


async def test_a_recorded_server_without_its_labels_is_deleted_by_its_id(
    cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes, deleted=True, with_server=False)
    spec = ServerSpec(instance.hostname, "cpx22", "ubuntu-24.04", "fsn1", {}, "")  # labels lost
    server = fakes.cloud.add_server(spec)
    fakes.db.instances[instance.id] = instance.with_server(server)

    assert await cleaner.clean(instance.id) is InstanceStatus.DELETED
    assert fakes.cloud.servers == {}


async def test_a_refused_cleanup_is_noted_and_raised_for_the_worker_to_log_once(
    cleaner: Cleaner, fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    instance = plant_instance(fakes, deleted=True)
    fakes.cloud.fail_next("delete_server", CloudError("protected", "delete protection is on", provider="Hetzner"))

    with pytest.raises(CloudError):
        await cleaner.clean(instance.id)

    assert caplog.records == []  # the worker's one line names the job, the attempt and this reason
    assert [c.reason for c in fakes.db.history if c.instance_id == instance.id] == [
        "cleanup failed, retrying: Hetzner: protected: delete protection is on"
    ]


async def test_the_recorded_server_is_deleted_by_id_with_no_lookup_and_a_labelled_one_is_found_when_none_is(
    cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    recorded = plant_instance(fakes, deleted=True)
    unrecorded = plant_instance(fakes, deleted=True)
    fakes.db.instances[unrecorded.id] = dataclasses.replace(unrecorded, provider_server_id=None)

    await cleaner.clean(recorded.id)
    assert fakes.cloud.calls == ["delete_server"]  # the project has one server of that name: nothing to look up
    await cleaner.clean(unrecorded.id)

    assert fakes.cloud.servers == {}
    assert fakes.cloud.calls[1:] == ["find_servers", "delete_server"]
