from __future__ import annotations

from datetime import timedelta

from smoke.domain.errors import CloudError
from smoke.domain.models import InstanceStatus
from smoke.domain.services import Dashboard, Provisioner
from smoke.domain.services.dashboard import FailureCount, ProvisionTime
from smoke.testing.providers import FakeAdaptersProvider
from tests.unit.conftest import OTHER, plant_instance, plant_request

REFUSED = CloudError("resource_unavailable", "cpx22 is not available in fsn1", provider="Hetzner")


async def test_live_requests_are_counted_against_the_cap_as_the_spend_guard_counts_them(
    dashboard: Dashboard, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    await provisioner.provision(plant_request(fakes).instance_id)
    plant_request(fakes)
    fakes.cloud.fail_next("create_server", REFUSED)
    await provisioner.provision(plant_request(fakes).instance_id)
    plant_instance(fakes, OTHER)

    overview = await dashboard.overview()

    assert (overview.live, overview.cap, overview.instances) == (2, 3, 3)


async def test_provision_times_are_per_region_oldest_first(
    dashboard: Dashboard, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    start = fakes.db.clock.now()
    for region, polls in [("hel1", 3), ("fsn1", 5), ("hel1", 2)]:
        fakes.cloud.polls_until_running = polls
        await provisioner.provision(plant_request(fakes, region=region).instance_id)
    plant_request(fakes)

    times = (await dashboard.overview()).provision_times

    assert list(times) == ["fsn1", "hel1"]
    assert times["hel1"][0] == ProvisionTime(start, 7.0)  # three reads of the server, at 1, 3 and 7 s (backoff)
    assert len(times["hel1"]) == 2


async def test_failures_are_counted_by_reason_most_frequent_first(
    dashboard: Dashboard, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    fakes.cloud.fail_next("create_server", REFUSED, times=2)
    for _ in range(3):
        await provisioner.provision(plant_request(fakes).instance_id)
    fakes.cloud.polls_until_running = 10_000
    await provisioner.provision(plant_request(fakes).instance_id)

    failures = (await dashboard.overview()).failures

    assert failures == [
        FailureCount("Hetzner: resource_unavailable: cpx22 is not available in fsn1", 2),
        FailureCount("not running after 60 s", 1),
    ]


async def test_the_newest_instances_come_with_their_timelines(
    dashboard: Dashboard, provisioner: Provisioner, fakes: FakeAdaptersProvider
) -> None:
    for _ in range(Dashboard.RECENT + 2):
        fakes.db.clock.advance(60)
        await provisioner.provision(plant_request(fakes).instance_id)

    recent = (await dashboard.overview()).recent

    assert len(recent) == Dashboard.RECENT
    assert recent[0].instance.created_at > recent[-1].instance.created_at
    assert [e.status for e in recent[0].events] == [
        InstanceStatus.QUEUED,
        InstanceStatus.PROVISIONING,
        InstanceStatus.RUNNING,
    ]


async def test_instances_requested_before_the_window_are_left_out(
    dashboard: Dashboard, fakes: FakeAdaptersProvider
) -> None:
    plant_request(fakes, at=fakes.db.clock.now() - timedelta(days=Dashboard.DAYS, seconds=1))
    plant_instance(fakes, status=InstanceStatus.FAILED)

    overview = await dashboard.overview()

    assert overview.instances == 1
    assert overview.since == overview.now - timedelta(days=Dashboard.DAYS)
