from __future__ import annotations

import json
import uuid

import pytest

from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError
from smoke.domain.models import CloudServer, Instance, InstanceStatus, ServerSpec
from smoke.domain.services import Deleter, Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, SCOPE, plant_instance, plant_request


def _config(fakes: FakeAdaptersProvider) -> dict[str, str]:
    [spec] = fakes.cloud.specs.values()
    user_data = json.loads(spec.user_data.removeprefix("#cloud-config\n"))
    return dict(json.loads(user_data["write_files"][0]["content"]))


async def test_provision_creates_one_labelled_server_and_reaches_running(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id

    assert await provisioner.provision(instance_id) is InstanceStatus.RUNNING

    [(server_id, spec)] = fakes.cloud.specs.items()
    instance = fakes.db.instances[instance_id]
    assert (spec.name, spec.location, spec.server_type, spec.image) == (
        Instance.hostname_for(instance_id),
        "fsn1",
        "cpx22",
        "ubuntu-24.04",
    )
    assert spec.labels == {
        "managed-by": "smoke",
        "smoke-instance-id": str(instance_id),
        "smoke-customer-id": str(SCOPE.customer_id),
    }
    assert (instance.status, instance.provider_server_id, instance.ipv4) == (
        InstanceStatus.RUNNING,
        server_id,
        fakes.cloud.servers[server_id].ipv4,
    )


async def test_the_user_data_carries_the_agent_configuration_and_only_a_digest_is_stored(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id

    await provisioner.provision(instance_id)

    token = fakes.tokens.agent_token(instance_id)
    assert _config(fakes) == {
        "instance_id": str(instance_id),
        "agent_token": token.token,
        "usage_url": "http://smoke.test/internal/v1/agent/usage-events",
        "manifest_id": "agent-default",
        "agent": "reference",
    }
    assert fakes.db.credentials[instance_id] == token.digest


async def test_running_twice_never_creates_a_second_server(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    await provisioner.provision(instance_id)
    fakes.db.instances[instance_id] = fakes.db.instances[instance_id].with_status(InstanceStatus.PROVISIONING)

    await provisioner.provision(instance_id)

    assert len(fakes.cloud.servers) == 1


async def test_a_rerun_after_a_lost_create_answer_adopts_the_server_by_label(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.lose_next_create_answer()
    with pytest.raises(CloudTransientError):
        await provisioner.provision(instance_id)
    [created] = fakes.cloud.servers

    assert await provisioner.provision(instance_id) is InstanceStatus.RUNNING

    assert list(fakes.cloud.servers) == [created]
    assert fakes.db.instances[instance_id].provider_server_id == created


async def test_a_name_clash_adopts_the_server_of_that_name(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    spec = ServerSpec(Instance.hostname_for(instance_id), "cpx22", "ubuntu-24.04", "fsn1", {}, "")
    created = fakes.cloud.add_server(spec)  # labels lost: only the name ties it to the instance

    assert await provisioner.provision(instance_id) is InstanceStatus.RUNNING

    assert list(fakes.cloud.servers) == [created.id]
    assert fakes.db.instances[instance_id].provider_server_id == created.id


async def test_an_agent_that_never_answers_fails_the_provision_and_deletes_the_server(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 3
    fakes.agents.down.add("http://203.0.113.2:8080")

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED
    assert fakes.cloud.servers == {}
    assert fakes.db.instances[instance_id].failure_reason == "not running after 60 s"


async def test_past_the_timeout_it_fails_and_deletes_the_server(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 10_000

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED

    assert fakes.cloud.servers == {}
    assert [(c.status, c.reason) for c in fakes.db.history] == [
        (InstanceStatus.PROVISIONING, None),
        (InstanceStatus.FAILED, "not running after 60 s"),
    ]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("resource_unavailable", "cpx22 is not available in fsn1"),
        ("placement_error", "error during placement"),
        ("resource_limit_exceeded", "server limit reached"),
        ("unauthorized", "unable to authenticate"),
    ],
)
async def test_a_refusal_of_the_cloud_fails_at_once_with_its_reason(
    provisioner: Provisioner, fakes: FakeAdaptersProvider, code: str, message: str
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.fail_next("create_server", CloudError(code, message, provider="Hetzner"))

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED

    assert fakes.db.instances[instance_id].failure_reason == f"Hetzner: {code}: {message}"
    assert fakes.db.clock.now() == fakes.db.instances[instance_id].created_at  # no waiting for the timeout


async def test_a_server_that_goes_off_fails_the_provision_and_is_deleted(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 1  # created initializing: the job reads it
    original = fakes.cloud.get_server

    async def off(server_id: int) -> CloudServer | None:
        server = await original(server_id)
        return None if server is None else CloudServer(server.id, server.name, "off", server.labels, server.ipv4)

    fakes.cloud.get_server = off  # type: ignore[method-assign]

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED
    assert fakes.cloud.servers == {}


async def test_a_cloud_refusing_the_cleanup_of_a_failed_provision_still_fails_it(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 10_000
    fakes.cloud.fail_next("delete_server", CloudError("locked", "an action is running"))

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED
    assert len(fakes.cloud.servers) == 1  # left for reconcile to collect: a failed instance holds no server


async def test_a_delete_that_lands_while_waiting_stops_the_provision(
    provisioner: Provisioner, deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 5
    original = fakes.db.clock.sleep

    async def sleep_then_delete(seconds: float) -> None:
        await original(seconds)
        await deleter.delete(instance_id)

    fakes.db.clock.sleep = sleep_then_delete  # type: ignore[method-assign]

    assert await provisioner.provision(instance_id) is InstanceStatus.DELETING
    assert fakes.db.instances[instance_id].status is InstanceStatus.DELETING


async def test_a_server_created_while_a_delete_lands_is_deleted_by_the_provision(
    provisioner: Provisioner, deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    original = fakes.cloud.create_server

    async def create_while_deleted(spec: ServerSpec) -> CloudServer:
        server = await original(spec)
        await deleter.delete(instance_id)
        return server

    fakes.cloud.create_server = create_while_deleted  # type: ignore[method-assign]

    assert await provisioner.provision(instance_id) is InstanceStatus.DELETING
    assert fakes.cloud.servers == {}


async def test_an_instance_deleted_before_the_job_ran_gets_no_server(
    provisioner: Provisioner, deleter: Deleter, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    await deleter.delete(instance_id)

    await provisioner.provision(instance_id)

    assert fakes.cloud.specs == {}


async def test_transient_cloud_errors_propagate_so_the_job_is_retried_and_say_why(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.fail_next("create_server", CloudTransientError("rate_limit_exceeded", "slow down", provider="Hetzner"))

    with pytest.raises(CloudTransientError):
        await provisioner.provision(instance_id)

    assert fakes.db.instances[instance_id].status is InstanceStatus.PROVISIONING
    assert fakes.db.history[-1].reason == "retrying: Hetzner: rate_limit_exceeded: slow down"


async def test_an_unknown_instance_is_nothing_to_do(provisioner: Provisioner, fakes: FakeAdaptersProvider) -> None:
    assert await provisioner.provision(uuid.uuid4()) is None
    assert fakes.cloud.calls == []


async def test_another_customers_request_is_never_provisioned(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    theirs = plant_request(fakes, OTHER)

    assert await provisioner.provision(theirs.instance_id) is None
    assert theirs.instance_id not in fakes.db.instances


async def test_failing_another_customers_instance_changes_nothing(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    theirs = plant_instance(fakes, OTHER, status=InstanceStatus.PROVISIONING)

    await provisioner.fail(theirs.id, "not ours")

    assert fakes.db.instances[theirs.id] == theirs
    assert theirs.provider_server_id in fakes.cloud.servers


@pytest.mark.parametrize("status", [InstanceStatus.RUNNING, InstanceStatus.FAILED])
async def test_an_instance_past_provisioning_is_left_as_it_is(
    provisioner: Provisioner, fakes: FakeAdaptersProvider, status: InstanceStatus
) -> None:
    instance = plant_instance(fakes, status=status)
    calls = list(fakes.cloud.calls)

    assert await provisioner.provision(instance.id) is status
    assert fakes.cloud.calls == calls
    assert fakes.db.instances[instance.id] == instance


async def test_a_recorded_server_is_used_again_without_a_lookup_or_a_create(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance = plant_instance(fakes, status=InstanceStatus.PROVISIONING)

    assert await provisioner.provision(instance.id) is InstanceStatus.RUNNING
    assert "find_servers" not in fakes.cloud.calls
    assert "create_server" not in fakes.cloud.calls


async def test_a_server_that_disappears_while_provisioning_fails_it_with_that_reason(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 1  # created initializing: the job reads it
    original = fakes.cloud.get_server

    async def vanished(server_id: int) -> CloudServer | None:
        await original(server_id)
        return None

    fakes.cloud.get_server = vanished  # type: ignore[method-assign]

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED
    reason = fakes.db.instances[instance_id].failure_reason
    assert reason == "cloud: not_found: the server disappeared while provisioning"


async def test_a_server_left_off_fails_with_the_reason_that_its_action_failed(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.polls_until_running = 1  # created initializing: the job reads it
    original = fakes.cloud.get_server

    async def off(server_id: int) -> CloudServer | None:
        server = await original(server_id)
        return None if server is None else CloudServer(server.id, server.name, "off", server.labels, server.ipv4)

    fakes.cloud.get_server = off  # type: ignore[method-assign]

    await provisioner.provision(instance_id)

    assert fakes.db.instances[instance_id].failure_reason == (
        "cloud: action_failed: the server is off: its create or start action failed"
    )


async def test_a_name_taken_by_no_server_is_retried_later(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.fail_next("create_server", CloudServerNameTaken("uniqueness_error", "server name is already used"))

    with pytest.raises(CloudTransientError) as raised:
        await provisioner.provision(instance_id)

    assert (raised.value.code, raised.value.message) == ("uniqueness_error", "server name taken but no such server")
    assert fakes.db.instances[instance_id].status is InstanceStatus.PROVISIONING


async def test_an_invalid_input_that_is_not_about_the_firewall_fails_at_once(
    provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    instance_id = plant_request(fakes).instance_id
    error = CloudError("invalid_input", "invalid input in field 'image'", provider="Hetzner")
    fakes.cloud.fail_next("create_server", error)

    assert await provisioner.provision(instance_id) is InstanceStatus.FAILED
    assert fakes.db.instances[instance_id].failure_reason == "Hetzner: invalid_input: invalid input in field 'image'"


async def test_a_failed_provision_is_one_warning_line_with_its_reason(
    provisioner: Provisioner, fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    instance_id = plant_request(fakes).instance_id
    fakes.cloud.fail_next("create_server", CloudError("placement_error", "error during placement", provider="Hetzner"))

    await provisioner.provision(instance_id)

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"provision of {instance_id} failed: Hetzner: placement_error: error during placement")
    ]


async def test_a_server_the_cloud_will_not_delete_is_one_warning_line(
    provisioner: Provisioner, fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    instance = plant_instance(fakes, status=InstanceStatus.PROVISIONING)
    fakes.cloud.fail_next("delete_server", CloudError("protected", "delete protection is on"))

    await provisioner.fail(instance.id, "given up")

    assert [r.getMessage() for r in caplog.records] == [
        f"server of failed {instance.id} not deleted, left for reconcile: delete protection is on (protected)",
        f"provision of {instance.id} failed: given up",
    ]
