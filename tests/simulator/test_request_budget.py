"""smoke's worker against ``smoke simulate-cloud --timing realistic`` (a process): what a cycle costs of a project's
3600 requests an hour, and 30 provisions with a smoke check among them on a bucket lowered to 300, without a 429.

The counts are the simulator's own (``GET /_sim/state`` counts every ``/v1`` request by route); the 429s are the
worker's log lines (``smoke.hetzner`` logs every failed attempt with its API code, at INFO).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.worker import running_worker
from tests.integration.conftest import SMOKE, stack_settings
from tests.simulator.conftest import TOKEN, SimulatedCloud
from tests.simulator.test_worker_against_the_simulator import provision, settles, smoke_check_process, stack_on

pytestmark = pytest.mark.slow

REALISTIC = ("--timing", "realistic", "--token-delay-ms", "1")
CYCLE_BUDGET = 25
"""Requests one cycle may cost (issue 14); an hcloud-go client polling each action every 500 ms spends ~48."""


def requests_of(cloud: SimulatedCloud) -> Counter[str]:
    """The Hetzner API requests so far, by route (not the agents': they are the servers', not the project's)."""
    counts = cloud.control.get("/_sim/state").json()["requests"]
    return Counter({route: count for route, count in counts.items() if " /v1/" in route})


def bucket_of(cloud: SimulatedCloud) -> tuple[int, int]:
    """``RateLimit-Limit`` and ``RateLimit-Remaining`` now (this read spends one)."""
    answer = httpx.get(f"{cloud.api_url}/locations", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return int(answer.headers["RateLimit-Limit"]), int(answer.headers["RateLimit-Remaining"])


async def gone(api: httpx.AsyncClient, instance_id: str, timeout: float) -> str:
    response = await api.delete(f"{SMOKE}/instances/{instance_id}")
    assert response.status_code == 200, response.text
    return await settles(api, instance_id, timeout, among=frozenset({"deleted"}))


async def test_one_cycle_provision_to_deleted_costs_at_most_25_requests_on_realistic_timing(
    settings: Settings, clean_database: str, simulate_cloud: Callable[..., SimulatedCloud]
) -> None:
    cloud = simulate_cloud(*REALISTIC)
    defaults = Settings()

    async with stack_on(settings, cloud, provision_poll_seconds=defaults.provision_poll_seconds) as api:
        instance_id = await provision(api, "one-cycle")
        assert await settles(api, instance_id, timeout=90) == "running"
        provisioned = requests_of(cloud)
        assert await gone(api, instance_id, timeout=60) == "deleted"
        cycle = requests_of(cloud)

    assert sum(cycle.values()) <= CYCLE_BUDGET, cycle
    assert cycle["POST /v1/servers"] == 1
    print(f"one cycle: {sum(cycle.values())} requests ({sum(provisioned.values())} until running): {dict(cycle)}")


async def test_thirty_provisions_and_a_smoke_check_on_a_bucket_of_300_meet_no_429_and_all_end_well(
    settings: Settings,
    clean_database: str,
    simulate_cloud: Callable[..., SimulatedCloud],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Thirty provisions at once, a ``smoke check`` (a process) started among them, then thirty deletes."""
    caplog.set_level(logging.INFO, logger="smoke.hetzner")
    cloud = simulate_cloud(*REALISTIC, "--rate-limit", "300")
    port = free_port()
    stack = stack_settings(settings, cloud.url).replace(
        public_url=f"http://127.0.0.1:{port}",
        provision_poll_seconds=Settings().provision_poll_seconds,
        provision_timeout_seconds=240,
        max_live_instances=40,
    )
    assert stack.ops_bearer_token is not None
    started = time.monotonic()
    container = make_container(stack)
    try:
        async with (
            serve_asgi(create_app(container), port=port) as url,
            running_worker(container, stack, concurrency=40),
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {stack.ops_bearer_token}"}) as api,
        ):
            ids = [await provision(api, f"thirty-{n}") for n in range(30)]
            check = await smoke_check_process(url, stack.ops_bearer_token, timeout=200)
            statuses = await asyncio.gather(*(settles(api, i, timeout=200) for i in ids))
            all_running = time.monotonic() - started
            stdout, stderr = await asyncio.wait_for(check.communicate(), timeout=220)
            deleted = await asyncio.gather(*(gone(api, i, timeout=120) for i in ids))
    finally:
        await container.close()

    report = json.loads(stdout)
    spent = requests_of(cloud)
    rate_limited = [record.getMessage() for record in caplog.records if "rate_limit_exceeded" in record.getMessage()]
    assert statuses == ["running"] * 30
    assert (check.returncode, report["passed"]) == (0, True), stderr.decode()
    assert deleted == ["deleted"] * 30
    assert rate_limited == []
    assert cloud.servers() == []
    limit, remaining = bucket_of(cloud)
    assert limit == 300
    assert spent["GET /v1/servers"] <= 31 + 10  # the label lookups, and a few listings for every job's polls
    print(
        f"30 provisions and a smoke check on a bucket of 300: all running in {all_running:.0f} s, the check passed "
        f"in {report['seconds']:.0f} s, all deleted; {sum(spent.values())} requests ({dict(spent)}), 0 429s, "
        f"{remaining} left"
    )
