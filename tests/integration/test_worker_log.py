"""What the real saq worker writes to the log while a job fails for an expected reason: one line per attempt.

The worker runs on the real queue (saq on PostgreSQL) with its services on the public fakes, so the cloud can be
told to refuse the cleanup's delete twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from saq import Queue

from smoke.bootstrap import make_container
from smoke.domain.errors import CloudTransientError
from smoke.domain.models import InstanceStatus
from smoke.observability import configure_logging
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from smoke.worker import running_worker
from tests.integration.support import until
from tests.unit.conftest import plant_instance

pytestmark = pytest.mark.slow


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


async def test_a_job_failing_for_an_expected_reason_logs_one_line_per_attempt_and_saq_says_nothing_else(
    settings: Settings, clean_database: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fakes = FakeAdaptersProvider()
    instance = plant_instance(fakes, deleted=True)
    refusal = CloudTransientError("rate_limit_exceeded", "limit reached", provider="Hetzner")
    fakes.cloud.fail_next("delete_server", refusal, times=2)
    container = make_container(settings, fakes)
    configure_logging("INFO", "json")

    async with running_worker(container, settings, concurrency=2):
        queue = await container.get(Queue)
        job = await queue.enqueue(
            "cleanup", key=f"cleanup:{instance.id}", kwargs={"instance_id": str(instance.id)}, retries=2, retry_delay=0
        )
        assert job is not None

        async def failed() -> bool:
            await job.refresh()
            return bool(job.status.value == "failed")

        await until(failed, timeout=30)
    await container.close()

    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["event"]) for r in records] == [
        ("info", "worker started on queue smoke (concurrency 2): provision, cleanup, reconcile"),
        ("warning", f"job cleanup:{instance.id} failed (attempt 1 of 2, retried): {refusal.reason}"),
        ("error", f"job cleanup:{instance.id} failed (attempt 2 of 2, not retried): {refusal.reason}"),
        ("info", "worker stopped on queue smoke"),
    ]
    assert not any("exception" in r for r in records)
    assert fakes.db.instances[instance.id].status is InstanceStatus.DELETING
