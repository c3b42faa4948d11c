"""``kept_alive``: a job is touched from a task of its own while it runs, and never after it ended."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from smoke.worker.tasks import kept_alive


class FakeJob:
    def __init__(self, heartbeat: int) -> None:
        self.key = "cleanup:1"
        self.heartbeat = heartbeat
        self.touches = 0
        self.fail = False

    async def update(self, **_: Any) -> None:
        if self.fail:
            raise OSError("the queue is unreachable")
        self.touches += 1


@pytest.mark.slow
async def test_a_job_is_touched_every_third_of_its_heartbeat_while_one_long_call_runs() -> None:
    job = FakeJob(heartbeat=3)

    async with kept_alive(job):  # type: ignore[arg-type]
        await asyncio.sleep(2.3)  # one cloud call being retried: nothing in the job touches it
    touched = job.touches
    await asyncio.sleep(1.2)

    assert touched == 2
    assert job.touches == touched  # nothing after the block: no write races the job's completion


@pytest.mark.slow
async def test_a_failed_touch_does_not_fail_the_job_and_the_next_one_is_tried() -> None:
    job = FakeJob(heartbeat=3)
    job.fail = True

    async with kept_alive(job):  # type: ignore[arg-type]
        await asyncio.sleep(1.1)
        job.fail = False
        await asyncio.sleep(1.0)

    assert job.touches == 1


async def test_without_a_heartbeat_nothing_is_touched() -> None:
    job = FakeJob(heartbeat=0)

    async with kept_alive(job):  # type: ignore[arg-type]
        await asyncio.sleep(0)

    assert job.touches == 0
