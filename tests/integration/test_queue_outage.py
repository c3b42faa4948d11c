"""The queue unreachable while smoke check provisions: once it is back, nothing is left behind.

The job queue is a Redis of this test's own, stopped before the check starts and started again on the same port
a few seconds later. Smoke Provision records the request and answers 503 (its enqueue failed); the check retries
with the same key, and either a retry gets the job queued (then the scenario runs through) or the check gives up
and deletes what its key stands for. Either way no server is left.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smoke.check import CheckOptions, SmokeCheck
from smoke.serving import free_port
from smoke.settings import Settings
from tests.integration.conftest import stack_settings
from tests.integration.support import servers, until
from tests.reliability.stack import served_stack

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class RestartableRedis:
    """A redis-server on a fixed loopback port that can be stopped and started again there."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", str(workdir)]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        async def answers() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True

        await until(answers, timeout=10)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server on PATH to stop and start a queue of its own")
    redis = RestartableRedis(binary, tmp_path)
    yield redis
    redis.stop()


async def test_a_check_during_a_queue_outage_leaves_no_server_once_the_queue_is_back(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    clean_database: str,
    restartable_redis: RestartableRedis,
) -> None:
    await restartable_redis.start()
    configured = stack_settings(settings, cloud_url).replace(queue_url=restartable_redis.url)
    async with served_stack(configured) as stack:
        restartable_redis.stop()
        assert configured.ops_bearer_token is not None
        options = CheckOptions(base_url=stack.url, token=configured.ops_bearer_token, timeout=90, poll_interval=0.25)
        check = SmokeCheck(options)
        running = asyncio.create_task(check.run())
        await asyncio.sleep(2)
        await restartable_redis.start()
        await asyncio.wait_for(running, 120)

        async def no_server_left() -> bool:
            return await servers(cloud) == []

        await until(no_server_left, timeout=60)

    provision = next(step for step in check.report.steps if step.name == "provision")
    assert provision.status == "passed", check.report
    assert "answered 503" in provision.last_seen  # refused while the queue was down, then retried with the same key
    assert check.report.passed, check.report
