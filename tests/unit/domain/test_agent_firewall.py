from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dishka import AsyncContainer

from smoke.bootstrap import make_container
from smoke.domain.errors import CloudServerNameTaken, CloudTransientError
from smoke.domain.models import FirewallRule, InstanceStatus
from smoke.domain.services import AgentFirewall, Provisioner
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, SETTINGS, plant_request

CIDRS = ("203.0.113.0/24", "2001:db8::/32")


@pytest.fixture
async def guarded(fakes: FakeAdaptersProvider) -> AsyncIterator[tuple[AgentFirewall, Provisioner]]:
    """The services of a deployment with AGENT_ALLOWED_CIDRS and HETZNER_SSH_KEYS set."""
    fakes.cloud.ssh_keys = {"ci"}
    settings = SETTINGS.replace(agent_allowed_cidrs=CIDRS, hetzner_ssh_keys=("ci",))
    container = make_container(settings, fakes)
    yield await container.get(AgentFirewall), await container.get(Provisioner)
    await container.close()


async def test_without_allowed_ranges_there_is_no_firewall(
    container: AsyncContainer, fakes: FakeAdaptersProvider
) -> None:
    firewall = await container.get(AgentFirewall)

    assert await firewall.ensure() == ()
    assert fakes.cloud.firewalls == {}


async def test_every_server_gets_the_one_firewall_and_the_ssh_keys(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider
) -> None:
    _, provisioner = guarded
    entries = [plant_request(fakes) for _ in range(10)]

    statuses = await asyncio.gather(*(provisioner.provision(e.instance_id) for e in entries))

    assert set(statuses) == {InstanceStatus.RUNNING}
    [firewall] = fakes.cloud.firewalls.values()
    assert firewall.rules == (FirewallRule(8080, CIDRS),)
    assert firewall.labels == {"managed-by": "smoke", "smoke-customer-id": str(SCOPE.customer_id)}
    assert {spec.firewall_ids for spec in fakes.cloud.specs.values()} == {(firewall.id,)}
    assert {spec.ssh_keys for spec in fakes.cloud.specs.values()} == {("ci",)}


async def test_a_restarted_worker_adopts_the_firewall_and_corrects_its_rules(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider
) -> None:
    firewall, _ = guarded
    [first] = await firewall.ensure()
    await fakes.cloud.set_firewall_rules(first, (FirewallRule(22, ("0.0.0.0/0",)),))
    firewall.forget()  # as a new process knows nothing

    assert await firewall.ensure() == (first,)
    assert list(fakes.cloud.firewalls) == [first]
    assert fakes.cloud.firewalls[first].rules == (FirewallRule(8080, CIDRS),)


async def test_a_firewall_deleted_behind_our_back_is_created_again_by_the_retry(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider
) -> None:
    firewall, provisioner = guarded
    [first] = await firewall.ensure()
    del fakes.cloud.firewalls[first]
    entry = plant_request(fakes)

    with pytest.raises(CloudTransientError) as raised:
        await provisioner.provision(entry.instance_id)
    assert (raised.value.code, raised.value.provider) == ("invalid_input", "cloud")
    assert await provisioner.provision(entry.instance_id) is InstanceStatus.RUNNING

    assert len(fakes.cloud.firewalls) == 1


async def test_an_existing_firewall_is_used_the_oldest_when_there_are_two(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider
) -> None:
    firewall, _ = guarded
    labels = {"managed-by": "smoke", "smoke-customer-id": str(SCOPE.customer_id)}
    rules = (FirewallRule(8080, CIDRS),)
    older = await fakes.cloud.create_firewall("older", labels, rules)
    await fakes.cloud.create_firewall("newer", labels, rules)
    fakes.cloud.calls.clear()

    assert await firewall.ensure() == (older.id,)
    assert fakes.cloud.calls == ["find_firewalls"]


async def test_a_firewall_another_worker_created_a_moment_ago_is_adopted(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider
) -> None:
    firewall, _ = guarded
    original = fakes.cloud.create_firewall

    async def created_elsewhere_first(*args: object, **kwargs: object) -> object:
        await original("smoke-agents-elsewhere", *args[1:])  # type: ignore[arg-type]
        raise CloudServerNameTaken("uniqueness_error", "firewall name is already used")

    fakes.cloud.create_firewall = created_elsewhere_first  # type: ignore[assignment, method-assign]

    [adopted] = await firewall.ensure()

    assert fakes.cloud.firewalls[adopted].name == "smoke-agents-elsewhere"


async def test_creating_and_correcting_the_firewall_are_one_line_each(
    guarded: tuple[AgentFirewall, Provisioner], fakes: FakeAdaptersProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="smoke.firewall")
    firewall, _ = guarded
    [created] = await firewall.ensure()
    await fakes.cloud.set_firewall_rules(created, ())
    firewall.forget()

    await firewall.ensure()

    assert [r.getMessage() for r in caplog.records] == [
        f"created the agent firewall {created} ({firewall.name}): tcp/8080 from 203.0.113.0/24, 2001:db8::/32",
        f"corrected the rules of the agent firewall {created}: tcp/8080 from 203.0.113.0/24, 2001:db8::/32",
    ]
    assert firewall.name == f"smoke-agents-{SCOPE.customer_id.hex[:12]}"
