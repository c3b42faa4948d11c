from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dishka import AsyncContainer

from smoke.bootstrap import make_container
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

    with pytest.raises(Exception, match="firewall"):
        await provisioner.provision(entry.instance_id)
    assert await provisioner.provision(entry.instance_id) is InstanceStatus.RUNNING

    assert len(fakes.cloud.firewalls) == 1
