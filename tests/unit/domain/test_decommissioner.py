from __future__ import annotations

import uuid
from uuid import UUID

from smoke.domain.models import InstanceStatus
from smoke.domain.services import Cleaner, Decommissioner, InstanceBuilder, Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import a_request


async def _soft_deleted_running_instance(provisioner: Provisioner, builder: InstanceBuilder, cleaner: Cleaner) -> UUID:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await builder.build(instance_id)
    await cleaner.delete(instance_id)
    return instance_id


async def test_decommission_deletes_the_server_and_marks_the_instance_deleted(
    provisioner: Provisioner,
    builder: InstanceBuilder,
    cleaner: Cleaner,
    decommissioner: Decommissioner,
    fakes: FakeAdaptersProvider,
) -> None:
    instance_id = await _soft_deleted_running_instance(provisioner, builder, cleaner)

    assert await decommissioner.decommission(instance_id) is InstanceStatus.DELETED

    assert fakes.cloud.servers == {}
    assert fakes.db.instances[instance_id].status is InstanceStatus.DELETED


async def test_a_server_already_gone_counts_as_done(
    provisioner: Provisioner,
    builder: InstanceBuilder,
    cleaner: Cleaner,
    decommissioner: Decommissioner,
    fakes: FakeAdaptersProvider,
) -> None:
    instance_id = await _soft_deleted_running_instance(provisioner, builder, cleaner)
    fakes.cloud.servers.clear()

    assert await decommissioner.decommission(instance_id) is InstanceStatus.DELETED
    assert await decommissioner.decommission(instance_id) is InstanceStatus.DELETED


async def test_an_instance_not_soft_deleted_is_left_alone(
    provisioner: Provisioner, builder: InstanceBuilder, decommissioner: Decommissioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = (await provisioner.submit(a_request())).instance_id
    await builder.build(instance_id)

    assert await decommissioner.decommission(instance_id) is InstanceStatus.RUNNING
    assert len(fakes.cloud.servers) == 1


async def test_an_unknown_instance_is_nothing_to_do(decommissioner: Decommissioner) -> None:
    assert await decommissioner.decommission(uuid.uuid4()) is None
