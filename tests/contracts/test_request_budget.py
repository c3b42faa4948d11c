"""The ``RequestBudget`` port: the fake, the in-process one and the PostgreSQL row every worker shares: one suite."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from smoke.adapters.budget import ProcessRequestBudget
from smoke.adapters.postgres.budget import PostgresRequestBudget, bucket_key
from smoke.domain.budget import RequestKind
from smoke.domain.ports import RequestBudget
from smoke.testing import FakeRequestBudget

READ, WRITE = RequestKind.READ, RequestKind.WRITE


@pytest.fixture(params=["fake", "process", "postgres"])
def budget(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> RequestBudget:
    if request.param == "fake":
        return FakeRequestBudget()
    if request.param == "process":
        return ProcessRequestBudget()
    return PostgresRequestBudget(pool, bucket_key(f"http://test/{uuid.uuid4()}", "token"))


async def test_a_new_bucket_is_hetzners_default_and_numbers_its_spends(budget: RequestBudget) -> None:
    spends = [await budget.spend(kind) for kind in (READ, WRITE, READ)]

    assert all(spend.granted for spend in spends)
    assert [spend.ticket for spend in spends] == [1, 2, 3]


async def test_an_answer_that_reports_a_low_bucket_holds_back_reads_before_writes(budget: RequestBudget) -> None:
    ticket = (await budget.spend(READ)).ticket

    await budget.correct(ticket, capacity=300, remaining=3)
    read = await budget.spend(READ)
    writes = [await budget.spend(WRITE) for _ in range(4)]

    assert not read.granted
    assert read.wait == pytest.approx((31 - 3) * 12, rel=0.01)  # up to the reserve, at 300 an hour
    assert [write.granted for write in writes] == [True, True, True, False]


async def test_concurrent_spends_are_granted_exactly_what_the_bucket_holds(budget: RequestBudget) -> None:
    await budget.correct((await budget.spend(WRITE)).ticket, capacity=300, remaining=10)

    spends = await asyncio.gather(*(budget.spend(WRITE) for _ in range(25)))

    granted = sorted(spend.ticket for spend in spends if spend.granted)
    assert granted == list(range(2, 12))


async def test_the_newest_answer_raises_the_estimate_as_the_cloud_refills(budget: RequestBudget) -> None:
    first = (await budget.spend(WRITE)).ticket
    await budget.correct(first, capacity=300, remaining=0)
    assert not (await budget.spend(WRITE)).granted

    await budget.correct(first, capacity=300, remaining=200)

    assert (await budget.spend(READ)).granted


async def test_an_unreachable_store_lets_the_requests_go_ungoverned() -> None:
    async with asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, timeout=1) as pool:
        budget = PostgresRequestBudget(pool, "unreachable")
        started = time.monotonic()

        spend = await budget.spend(WRITE)
        await budget.correct(spend.ticket, capacity=300, remaining=0)

    assert (spend.granted, spend.ticket) == (True, 0)
    assert time.monotonic() - started < 5
