"""The ``CloudProvider`` contract, run against ``FakeCloudProvider`` and against ``HetznerCloudProvider`` talking
real loopback HTTP to the simulated Hetzner Cloud; then the Hetzner adapter under the simulator's faults."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from smoke.adapters.hetzner import HetznerCloudProvider, hetzner_client
from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError
from smoke.domain.models import CloudServer, FirewallRule, ServerSpec
from smoke.domain.ports import CloudProvider
from smoke.serving import serve_asgi
from smoke.simulators import create_cloud_simulator
from smoke.testing import FakeCloudProvider

TOKEN = "sim-token"
ACTION_SECONDS = 0.05
LABELS = {"managed-by": "smoke", "smoke-instance-id": "6f1c2a8e-0000-4000-8000-000000000001"}
_names = itertools.count(1)


def a_spec(name: str | None = None, labels: dict[str, str] | None = None) -> ServerSpec:
    return ServerSpec(
        name=name or f"contract-{next(_names)}",
        server_type="cpx22",
        image="ubuntu-24.04",
        location="fsn1",
        labels=dict(LABELS if labels is None else labels),
        user_data="#cloud-config\n",
    )


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


class ManualClock:
    """The simulator's clock under faults: it moves only when the adapter sleeps, so every run draws the same faults."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[httpx.AsyncClient]:
    """The simulated cloud on loopback, on the real clock with short actions; a client of its base URL."""
    app = create_cloud_simulator(token=TOKEN, action_seconds=ACTION_SECONDS, boot_seconds=0.0, seed=5)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as control:
        yield control


@pytest.fixture
async def sim(simulator: httpx.AsyncClient) -> httpx.AsyncClient:
    """The simulator, reset: no servers, no faults, a re-seeded random generator."""
    (await simulator.post("/_sim/reset")).raise_for_status()
    return simulator


@pytest.fixture
async def api_client(sim: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    async with hetzner_client(api_url(sim), TOKEN, timeout=5.0) as client:
        yield client


@pytest.fixture
def hetzner(api_client: httpx.AsyncClient) -> HetznerCloudProvider:
    return HetznerCloudProvider(api_client, sleep=no_wait, action_poll_interval=0.01, action_timeout=5.0)


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
async def faulty_simulator(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """A seeded simulator on a manual clock: the request sequence, and so each drawn fault, is the same every run."""
    app = create_cloud_simulator(token=TOKEN, action_seconds=ACTION_SECONDS, boot_seconds=0.0, seed=5, clock=clock)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as control:
        yield control


@pytest.fixture
async def faulty_sim(faulty_simulator: httpx.AsyncClient) -> httpx.AsyncClient:
    (await faulty_simulator.post("/_sim/reset")).raise_for_status()
    return faulty_simulator


@pytest.fixture
async def faulty_hetzner(faulty_sim: httpx.AsyncClient, clock: ManualClock) -> AsyncIterator[HetznerCloudProvider]:
    """The adapter on the manual-clock simulator; its waits (retries, polls) advance that clock instead of waiting."""
    async with hetzner_client(api_url(faulty_sim), TOKEN, timeout=5.0) as client:
        yield HetznerCloudProvider(
            client, sleep=clock.sleep, clock=clock, action_poll_interval=ACTION_SECONDS, action_timeout=5.0
        )


@pytest.fixture(params=["fake", "hetzner"])
def cloud(request: pytest.FixtureRequest, hetzner: HetznerCloudProvider) -> CloudProvider:
    if request.param == "fake":
        return FakeCloudProvider(polls_until_running=2)
    return hetzner


def api_url(sim: httpx.AsyncClient) -> str:
    return str(sim.base_url.join("/v1"))


async def set_faults(sim: httpx.AsyncClient, **hetzner: Any) -> None:
    (await sim.put("/_sim/faults", json={"hetzner": hetzner})).raise_for_status()


async def sim_servers(sim: httpx.AsyncClient) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = (await sim.get("/_sim/state")).json()["servers"]
    return servers


def ids(servers: list[CloudServer]) -> set[int]:
    return {server.id for server in servers}


# --- the contract: fake and Hetzner alike --------------------------------------------------------------------------


async def test_create_returns_the_server_with_its_name_labels_and_ipv4(cloud: CloudProvider) -> None:
    spec = a_spec()

    server = await cloud.create_server(spec)

    assert (server.name, server.labels) == (spec.name, spec.labels)
    assert server.id > 0
    assert server.ipv4


async def test_a_created_server_is_found_by_id_by_name_and_by_labels(cloud: CloudProvider) -> None:
    created = await cloud.create_server(a_spec())

    by_id = await cloud.get_server(created.id)
    by_name = await cloud.find_server_by_name(created.name)

    assert by_id is not None
    assert by_name is not None
    assert (by_id.id, by_id.name, by_id.labels) == (created.id, created.name, created.labels)
    assert by_name.id == created.id
    assert ids(await cloud.find_servers(LABELS)) == {created.id}
    assert ids(await cloud.find_servers({"managed-by": "smoke"})) == {created.id}


async def test_servers_with_other_labels_are_not_found(cloud: CloudProvider) -> None:
    await cloud.create_server(a_spec())

    assert await cloud.find_servers({"managed-by": "someone-else"}) == []
    assert await cloud.find_servers({**LABELS, "extra": "label"}) == []
    assert await cloud.find_servers({"smoke-instance-id": "6f1c2a8e-0000-4000-8000-000000000002"}) == []


async def test_find_servers_returns_every_match_across_pages(cloud: CloudProvider) -> None:
    batch = {"managed-by": "smoke", "batch": "big"}
    created = [await cloud.create_server(a_spec(labels=batch)) for _ in range(53)]
    await cloud.create_server(a_spec(labels={"managed-by": "smoke", "batch": "small"}))

    found = await cloud.find_servers(batch)

    assert len(found) == 53
    assert ids(found) == ids(created)


async def test_creating_a_name_twice_raises_name_taken(cloud: CloudProvider) -> None:
    spec = a_spec()
    await cloud.create_server(spec)

    with pytest.raises(CloudServerNameTaken):
        await cloud.create_server(a_spec(name=spec.name, labels={"managed-by": "smoke"}))


async def test_unknown_ids_and_names_are_none(cloud: CloudProvider) -> None:
    assert await cloud.get_server(987_654_321) is None
    assert await cloud.find_server_by_name("no-such-server") is None


async def test_delete_removes_the_server_and_a_second_delete_is_false(cloud: CloudProvider) -> None:
    server = await cloud.create_server(a_spec())

    assert await cloud.delete_server(server.id) is True
    assert await cloud.get_server(server.id) is None
    assert await cloud.find_servers(LABELS) == []
    assert await cloud.delete_server(server.id) is False


async def test_a_deleted_servers_name_can_be_used_again(cloud: CloudProvider) -> None:
    first = await cloud.create_server(a_spec())
    await cloud.delete_server(first.id)

    second = await cloud.create_server(a_spec(name=first.name))

    assert second.id != first.id


async def test_a_new_server_reaches_running_when_polled(cloud: CloudProvider) -> None:
    server: CloudServer | None = await cloud.create_server(a_spec())

    for _ in range(200):
        assert server is not None
        if server.is_running:
            break
        await asyncio.sleep(0.01)
        server = await cloud.get_server(server.id)

    assert server is not None
    assert server.is_running


async def test_the_catalog_answers_server_types_locations_and_images_by_architecture(cloud: CloudProvider) -> None:
    offer = await cloud.server_type("cpx22")

    assert offer is not None
    assert (offer.name, offer.architecture) == ("cpx22", "x86")
    assert "fsn1" in offer.orderable_in
    assert await cloud.server_type("cpx99999") is None
    assert await cloud.location_exists("fsn1")
    assert not await cloud.location_exists("atlantis")
    assert await cloud.image_exists("ubuntu-24.04", "x86")
    assert await cloud.image_exists("ubuntu-24.04", "arm")
    assert not await cloud.image_exists("windows-95", "x86")


async def test_a_firewall_is_created_found_by_labels_and_its_rules_replaced(cloud: CloudProvider) -> None:
    labels = {"managed-by": "smoke", "smoke-customer-id": "c1"}
    rules = (FirewallRule(8080, ("203.0.113.0/24",)),)

    created = await cloud.create_firewall("smoke-agents-contract", labels, rules)
    await cloud.set_firewall_rules(created.id, (FirewallRule(9090, ("198.51.100.0/24", "2001:db8::/32")),))

    [found] = await cloud.find_firewalls(labels)
    assert (found.id, found.name, found.labels) == (created.id, "smoke-agents-contract", labels)
    assert found.rules == (FirewallRule(9090, ("198.51.100.0/24", "2001:db8::/32")),)
    assert await cloud.find_firewalls({"managed-by": "someone-else"}) == []
    with pytest.raises(CloudServerNameTaken):
        await cloud.create_firewall("smoke-agents-contract", labels, rules)


async def test_a_server_created_with_a_firewall_and_unknown_references_are_refused(cloud: CloudProvider) -> None:
    firewall = await cloud.create_firewall("smoke-agents-create", {"managed-by": "smoke"}, ())

    server = await cloud.create_server(dataclasses.replace(a_spec(), firewall_ids=(firewall.id,)))

    assert server.id
    with pytest.raises(CloudError) as unknown_firewall:
        await cloud.create_server(dataclasses.replace(a_spec(), firewall_ids=(firewall.id + 1000,)))
    with pytest.raises(CloudError) as unknown_key:
        await cloud.create_server(dataclasses.replace(a_spec(), ssh_keys=("nobodys-key",)))
    assert unknown_firewall.value.code == unknown_key.value.code == "invalid_input"
    assert not await cloud.ssh_key_exists("nobodys-key")


# --- Hetzner over the simulator, with faults -------------------------------------------------------------------


async def test_the_hetzner_adapter_sends_what_the_simulator_records(
    hetzner: HetznerCloudProvider, sim: httpx.AsyncClient
) -> None:
    server = await hetzner.create_server(a_spec(name="smoke-0123456789ab"))

    [recorded] = await sim_servers(sim)
    assert recorded["id"] == server.id
    assert (recorded["name"], recorded["labels"], recorded["ipv4"]) == ("smoke-0123456789ab", LABELS, server.ipv4)
    assert (recorded["server_type"], recorded["image"], recorded["location"]) == ("cpx22", "ubuntu-24.04", "fsn1")


@pytest.mark.parametrize("fault", ["rate_limit_ratio", "error_ratio"])
async def test_half_the_requests_failing_transiently_still_lets_create_get_and_delete_succeed(
    faulty_hetzner: HetznerCloudProvider, faulty_sim: httpx.AsyncClient, fault: str
) -> None:
    await set_faults(faulty_sim, **{fault: 0.5})

    server = await faulty_hetzner.create_server(a_spec())
    fetched = await faulty_hetzner.get_server(server.id)
    found = await faulty_hetzner.find_servers(LABELS)
    deleted = await faulty_hetzner.delete_server(server.id)

    assert fetched is not None
    assert fetched.id == server.id
    assert ids(found) == {server.id}
    assert deleted is True
    assert await sim_servers(faulty_sim) == []


async def test_a_create_whose_answer_is_dropped_raises_name_taken_and_leaves_one_server(
    faulty_hetzner: HetznerCloudProvider, faulty_sim: httpx.AsyncClient
) -> None:
    await set_faults(faulty_sim, drop_create_response_ratio=1.0)
    spec = a_spec()

    with pytest.raises(CloudServerNameTaken):
        await faulty_hetzner.create_server(spec)

    [recorded] = await sim_servers(faulty_sim)
    adopted = await faulty_hetzner.find_server_by_name(spec.name)
    assert adopted is not None
    assert adopted.id == recorded["id"]


async def test_a_failed_delete_action_raises_cloud_error_and_the_server_stays(
    faulty_hetzner: HetznerCloudProvider, faulty_sim: httpx.AsyncClient
) -> None:
    server = await faulty_hetzner.create_server(a_spec())
    await set_faults(faulty_sim, action_error_ratio=1.0)

    with pytest.raises(CloudError) as raised:
        await faulty_hetzner.delete_server(server.id)

    assert raised.value.code == "action_failed"
    assert not isinstance(raised.value, CloudTransientError)
    assert await faulty_hetzner.get_server(server.id) is not None


async def test_a_wrong_token_is_refused_without_retrying(sim: httpx.AsyncClient) -> None:
    async with hetzner_client(api_url(sim), "not-the-token") as client:
        provider = HetznerCloudProvider(client, sleep=no_wait)

        with pytest.raises(CloudError) as raised:
            await provider.get_server(1)

    assert raised.value.code == "unauthorized"
    assert (await sim.get("/_sim/state")).json()["requests"] == {"GET /v1/servers/{id}": 1}


async def test_an_ssh_key_of_the_project_is_found_by_name_and_id_and_given_to_a_server(
    sim: httpx.AsyncClient, hetzner: HetznerCloudProvider
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl smoke@ci"
    created = await sim.post(
        "/v1/ssh_keys", json={"name": "ci", "public_key": key}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    key_id = created.json()["ssh_key"]["id"]

    assert await hetzner.ssh_key_exists("ci")
    assert await hetzner.ssh_key_exists(str(key_id))
    assert not await hetzner.ssh_key_exists(str(key_id + 1))
    server = await hetzner.create_server(dataclasses.replace(a_spec(), ssh_keys=("ci",)))
    [recorded] = [s for s in await sim_servers(sim) if s["id"] == server.id]
    assert recorded["name"] == server.name
