"""The request bucket's estimate (smoke.domain.budget): who may go, how long the others wait, how answers correct it."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smoke.domain.budget import BucketLevel, RequestKind

READ, WRITE = RequestKind.READ, RequestKind.WRITE


def test_a_write_may_take_the_last_request_while_a_read_leaves_the_writes_their_reserve() -> None:
    level = BucketLevel(capacity=300, tokens=5.0, at=0.0)

    after_write, write = level.spend(WRITE, 0.0)
    _, read = level.spend(READ, 0.0)

    assert write.granted
    assert after_write.tokens == 4.0
    assert not read.granted
    assert read.wait == pytest.approx((31 - 5) * 12)  # the reserve of 30, refilled at 300 an hour: one per 12 s


def test_a_full_bucket_grants_both_kinds_and_numbers_each_spend() -> None:
    level = BucketLevel.full(0.0)
    tickets = []
    for kind in (READ, WRITE, READ):
        level, spend = level.spend(kind, 0.0)
        tickets.append(spend.ticket)

    assert tickets == [1, 2, 3]
    assert level.tokens == 3597


@given(
    capacity=st.integers(1, 10_000),
    tokens=st.floats(-50, 10_000, allow_nan=False),
    kind=st.sampled_from(RequestKind),
)
def test_a_refused_spend_is_granted_once_its_wait_has_passed_and_not_much_sooner(
    capacity: int, tokens: float, kind: RequestKind
) -> None:
    level = BucketLevel(capacity, min(tokens, capacity), at=1000.0)
    _, spend = level.spend(kind, 1000.0)
    if spend.granted:
        return

    assert level.spend(kind, 1000.0 + spend.wait * 1.000001 + 1e-6)[1].granted
    assert not level.spend(kind, 1000.0 + spend.wait * 0.99 - 1e-6)[1].granted


def test_an_answer_sets_the_level_less_the_requests_spent_after_it_both_down_and_up() -> None:
    level = BucketLevel.full(0.0)
    for _ in range(5):
        level, _ = level.spend(WRITE, 0.0)  # tickets 1..5

    someone_else_spent = level.corrected(1.0, ticket=2, capacity=300, remaining=40)
    refilled_since = someone_else_spent.corrected(2.0, ticket=5, capacity=300, remaining=290)

    assert (someone_else_spent.capacity, someone_else_spent.tokens) == (300, 40 - 3)
    assert refilled_since.tokens == 290


def test_a_bucket_refills_its_capacity_an_hour_and_no_further() -> None:
    level = BucketLevel(capacity=3600, tokens=0.0, at=0.0)

    assert level.refilled(60.0).tokens == pytest.approx(60.0)
    assert level.refilled(10 * 3600.0).tokens == 3600
    assert level.refilled(-5.0).tokens == 0.0  # a clock that went back refills nothing


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), capacity=st.integers(20, 400), clients=st.integers(1, 40))
def test_governed_clients_never_meet_an_empty_bucket_whatever_order_their_answers_come_back_in(
    seed: int, capacity: int, clients: int
) -> None:
    """A model of the cloud: it charges requests in the order they were spent, answers them in any order.

    Each client keeps one request in flight (a job waits for its answer), reads and writes at random, and every
    answer corrects the shared estimate. Time passes in random steps; the bucket refills as the cloud's does.
    """
    rng = random.Random(seed)
    now = 0.0
    cloud_tokens, cloud_at = float(capacity), 0.0
    level = BucketLevel.full(now, capacity)
    waiting_until = [0.0] * clients
    in_flight: dict[int, int] = {}  # client -> ticket, not yet charged
    charged: list[tuple[int, int, int]] = []  # (client, ticket, remaining) charged, answer not yet back

    for _ in range(3000):
        now += rng.choice((0.0, 0.0, 0.0, 0.01, 0.5, 5.0))
        cloud_tokens = min(capacity, cloud_tokens + (now - cloud_at) * capacity / 3600)
        cloud_at = now
        move = rng.random()
        if move < 0.4:
            client = rng.randrange(clients)
            if client not in in_flight and all(c != client for c, _, _ in charged) and now >= waiting_until[client]:
                level, spend = level.spend(rng.choice((READ, WRITE)), now)
                if spend.granted:
                    in_flight[client] = spend.ticket
                else:
                    waiting_until[client] = now + spend.wait
        elif move < 0.7 and in_flight:
            client, ticket = min(in_flight.items(), key=lambda item: item[1])  # the cloud charges in spend order
            del in_flight[client]
            assert cloud_tokens >= 1, "a governed request met an empty bucket (429)"
            cloud_tokens -= 1
            charged.append((client, ticket, math.floor(cloud_tokens)))
        elif charged:
            _, ticket, remaining = charged.pop(rng.randrange(len(charged)))
            level = level.corrected(now, ticket, capacity, remaining)


def test_a_write_may_take_the_very_last_request() -> None:
    _, spend = BucketLevel(capacity=300, tokens=1.0, at=0.0).spend(WRITE, 0.0)

    assert spend.granted


@pytest.mark.parametrize(("capacity", "remaining"), [(0, 10), (300, -1)])
def test_headers_that_cannot_be_a_bucket_change_nothing_but_the_refill(capacity: int, remaining: int) -> None:
    level = BucketLevel(capacity=300, tokens=100.0, at=0.0, spent=7)

    assert level.corrected(12.0, ticket=3, capacity=capacity, remaining=remaining) == level.refilled(12.0)


def test_an_answer_to_an_ungoverned_request_sets_the_level_as_it_says() -> None:
    level = BucketLevel(capacity=300, tokens=100.0, at=0.0, spent=7)

    assert level.corrected(0.0, ticket=0, capacity=300, remaining=50).tokens == 50
