"""The servers provision jobs wait for, read once for all of them (``ServerWatch``)."""

from __future__ import annotations

import asyncio

import pytest
from dishka import AsyncContainer

from smoke.domain.models import InstanceStatus, ServerSpec
from smoke.domain.services import Provisioner, ServerWatch
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import SCOPE, plant_request

LABELS = {"managed-by": "smoke", "smoke-customer-id": str(SCOPE.customer_id)}


@pytest.fixture
async def watch(container: AsyncContainer) -> ServerWatch:
    return await container.get(ServerWatch)


def a_server(fakes: FakeAdaptersProvider, name: str, labels: dict[str, str] = LABELS) -> int:
    spec = ServerSpec(name, "cpx22", "ubuntu-24.04", "fsn1", labels, "#cloud-config\n")
    return fakes.cloud.add_server(spec, status="initializing").id


async def test_a_server_polled_alone_is_read_by_its_id(watch: ServerWatch, fakes: FakeAdaptersProvider) -> None:
    server_id = a_server(fakes, "smoke-a")

    await watch.server(server_id)
    await watch.server(server_id)

    assert fakes.cloud.calls == ["get_server", "get_server"]


async def test_while_others_poll_one_listing_answers_every_poll_while_it_is_fresh(
    watch: ServerWatch, fakes: FakeAdaptersProvider
) -> None:
    ids = [a_server(fakes, f"smoke-{n}") for n in range(5)]

    await watch.server(ids[0])
    found = [await watch.server(server_id) for server_id in ids[1:]]
    fakes.db.clock.advance(1.5)  # past poll_seconds: the listing is stale
    await watch.server(ids[0])

    assert [server.id for server in found if server] == ids[1:]
    assert fakes.cloud.calls == ["get_server", "find_servers", "find_servers"]


async def test_a_server_the_listing_does_not_show_is_read_by_id_and_another_customers_are_not_listed(
    watch: ServerWatch, fakes: FakeAdaptersProvider
) -> None:
    ours = a_server(fakes, "smoke-ours")
    theirs = a_server(fakes, "smoke-theirs", {"managed-by": "smoke", "smoke-customer-id": "someone-else"})

    await watch.server(ours)
    assert await watch.server(theirs) is not None  # read by id: the caller has its id, so it exists for it

    assert fakes.cloud.calls == ["get_server", "find_servers", "get_server"]


async def test_thirty_provisions_at_once_read_their_servers_in_a_few_listings(
    container: AsyncContainer, fakes: FakeAdaptersProvider
) -> None:
    provisioner = await container.get(Provisioner)
    fakes.cloud.polls_until_running = 3
    entries = [plant_request(fakes) for _ in range(30)]

    statuses = await asyncio.gather(*(provisioner.provision(entry.instance_id) for entry in entries))

    assert set(statuses) == {InstanceStatus.RUNNING}
    server_reads = fakes.cloud.calls.count("get_server") + fakes.cloud.calls.count("find_servers") - 30
    assert server_reads <= 10, fakes.cloud.calls  # 30 label lookups before the creates; alone, 90 reads
