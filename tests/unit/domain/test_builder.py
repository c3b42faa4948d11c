from __future__ import annotations

import dataclasses
import uuid

import pytest

from smoke.domain.errors import CloudTransientError
from smoke.domain.models import Instance, InstanceStatus, ServerSpec
from smoke.domain.services import Cleaner, InstanceBuilder, Provisioner
from smoke.testing import FakeClock
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, a_request


async def _accepted(provisioner: Provisioner) -> uuid.UUID:
    return (await provisioner.submit(a_request())).instance_id


async def test_build_creates_one_labelled_server_and_reaches_running(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)

    assert await builder.build(instance_id) is InstanceStatus.RUNNING

    [spec] = fakes.cloud.specs.values()
    instance = fakes.db.instances[instance_id]
    assert (spec.name, spec.location, spec.server_type, spec.image) == (
        Instance.hostname_for(instance_id),
        "fsn1",
        "cpx22",
        "ubuntu-24.04",
    )
    assert spec.labels == {"managed-by": "smoke", "smoke-instance-id": str(instance_id)}
    assert (instance.status, instance.provider_server_id, instance.ipv4) == (
        InstanceStatus.RUNNING,
        next(iter(fakes.cloud.servers)),
        next(iter(fakes.cloud.servers.values())).ipv4,
    )


async def test_the_user_data_carries_the_agent_configuration_and_only_a_digest_is_stored(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)

    await builder.build(instance_id)

    [spec] = fakes.cloud.specs.values()
    token = fakes.tokens.agent_token(instance_id)
    assert spec.user_data.startswith("#cloud-config\n")
    assert "/etc/smoke-agent/config.json" in spec.user_data
    assert f'"agent_token": "{token.token}"' in spec.user_data
    assert '"usage_url": "http://smoke.test/internal/v1/agent/usage-events"' in spec.user_data
    assert fakes.db.credentials[instance_id] == token.digest


async def test_running_twice_never_creates_a_second_server(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    await builder.build(instance_id)
    fakes.db.instances[instance_id] = fakes.db.instances[instance_id].with_status(InstanceStatus.PROVISIONING)

    await builder.build(instance_id)

    assert len(fakes.cloud.servers) == 1


async def test_a_rerun_after_a_lost_create_response_adopts_the_server_by_label(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    instance = Instance.new(fakes.db.ledger[SCOPE.customer_id, "ci-run-1"], SCOPE, fakes.db.clock.now())
    spec = ServerSpec(instance.hostname, "cpx22", "ubuntu-24.04", "fsn1", instance.labels(), "")
    created = await fakes.cloud.create_server(spec)  # the first attempt's server; its id never reached the row

    assert await builder.build(instance_id) is InstanceStatus.RUNNING

    assert list(fakes.cloud.servers) == [created.id]
    assert fakes.db.instances[instance_id].provider_server_id == created.id


async def test_a_name_clash_adopts_the_server_of_that_name(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    spec = ServerSpec(Instance.hostname_for(instance_id), "cpx22", "ubuntu-24.04", "fsn1", {}, "")
    created = await fakes.cloud.create_server(spec)  # labels lost: only the name ties it to the instance

    await builder.build(instance_id)

    assert list(fakes.cloud.servers) == [created.id]


async def test_an_agent_that_never_answers_fails_the_build_and_deletes_the_server(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    fakes.cloud.polls_until_running = 3
    fakes.agents.down.add("http://203.0.113.2:8080")

    assert await builder.build(instance_id) is InstanceStatus.FAILED
    assert fakes.cloud.servers == {}
    assert "not running after 60 s" in (fakes.db.instances[instance_id].failure_reason or "")


async def test_past_the_timeout_it_fails_and_deletes_the_server(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    fakes.cloud.polls_until_running = 10_000

    assert await builder.build(instance_id) is InstanceStatus.FAILED

    assert fakes.cloud.servers == {}
    assert [c.status for c in await fakes.instances.history(instance_id)] == [
        InstanceStatus.PROVISIONING,
        InstanceStatus.FAILED,
    ]


async def test_a_delete_that_lands_while_waiting_stops_the_build(
    builder: InstanceBuilder, provisioner: Provisioner, cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    fakes.cloud.polls_until_running = 5

    class DeletingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            self.advance(seconds)
            await cleaner.delete(instance_id)

    clock = DeletingClock(fakes.db.clock.now())
    status = await dataclasses.replace(builder, clock=clock).build(instance_id)

    assert status is InstanceStatus.DELETING
    assert fakes.db.instances[instance_id].status is InstanceStatus.DELETING


async def test_an_instance_deleted_before_the_job_ran_gets_no_server(
    builder: InstanceBuilder, provisioner: Provisioner, cleaner: Cleaner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)
    await cleaner.delete(instance_id)

    await builder.build(instance_id)

    assert fakes.cloud.specs == {}


async def test_transient_cloud_errors_propagate_so_the_job_is_retried(
    builder: InstanceBuilder, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = await _accepted(provisioner)

    async def flaky(spec: ServerSpec) -> None:
        raise CloudTransientError("rate_limit_exceeded", "slow down")

    fakes.cloud.create_server = flaky  # type: ignore[assignment, method-assign]

    with pytest.raises(CloudTransientError):
        await builder.build(instance_id)
    assert fakes.db.instances[instance_id].status is InstanceStatus.PROVISIONING


async def test_an_unknown_instance_is_nothing_to_do(builder: InstanceBuilder) -> None:
    assert await builder.build(uuid.uuid4()) is None
