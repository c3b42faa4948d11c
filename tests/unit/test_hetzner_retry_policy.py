"""The Hetzner adapter's retry policy and request budget, on ``httpx.MockTransport``: no network, no real waiting."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypedDict, Unpack

import httpx
import pytest

from smoke.adapters.hetzner import HetznerCloudProvider, hetzner_client
from smoke.domain.budget import BucketLevel, RequestKind
from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError
from smoke.domain.models import ServerSpec
from smoke.domain.ports import RequestBudget
from smoke.testing import FakeRequestBudget

TOKEN = "hz-secret-token-4f1c9e0b7a2d"
API_URL = "https://api.hetzner.test/v1"
NOW = 1_767_225_600.0
SERVER = {
    "id": 42,
    "name": "smoke-0123456789ab",
    "status": "running",
    "labels": {"managed-by": "smoke"},
    "public_net": {"ipv4": {"id": 1, "ip": "203.0.113.7", "blocked": False, "dns_ptr": "x"}, "ipv6": None},
}
SPEC = ServerSpec("smoke-0123456789ab", "cpx22", "ubuntu-24.04", "fsn1", {"managed-by": "smoke"}, "#cloud-config\n")

Step = Callable[[httpx.Request], httpx.Response]


def api_error(status: int, code: str, headers: dict[str, str] | None = None) -> Step:
    body = {"error": {"code": code, "message": f"{code} happened", "details": None}}
    return lambda _request: httpx.Response(status, json=body, headers=headers)


def bare(status: int) -> Step:
    return lambda _request: httpx.Response(
        status, text="<html>upstream trouble</html>", headers={"Content-Type": "text/html"}
    )


def raises(error: type[httpx.TransportError], message: str = "") -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    return step


def ok(status: int = 200, **body: object) -> Step:
    return lambda _request: httpx.Response(status, json=body or {"server": SERVER})


def action(status: str, error: dict[str, str] | None = None) -> Step:
    return ok(action={"id": 7, "command": "delete_server", "status": status, "error": error})


class Script:
    """Answers each request with the next step; the last step answers every request after it."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return step(request)


class Sleeps(list[float]):
    """A sleep that records how long it was asked to wait and returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


class Options(TypedDict, total=False):
    """The keyword options of ``HetznerCloudProvider``."""

    max_retries: int
    backoff_cap: float
    action_poll_interval: float
    action_poll_cap: float
    action_timeout: float
    sleep: Callable[[float], Awaitable[object]]
    rng: random.Random
    clock: Callable[[], float]
    budget: RequestBudget | None


class Adapter(Protocol):
    """What the ``adapter`` fixture gives: the adapter on a client answered by ``script``, ``options`` overriding."""

    def __call__(self, script: Script, **options: Unpack[Options]) -> HetznerCloudProvider: ...


@pytest.fixture
async def adapter(sleeps: Sleeps) -> AsyncIterator[Adapter]:
    """Builds the adapter on a client answered by a ``Script``; keyword arguments override its options."""
    clients: list[httpx.AsyncClient] = []

    def build(script: Script, **options: Unpack[Options]) -> HetznerCloudProvider:
        client = httpx.AsyncClient(
            base_url=API_URL, headers={"Authorization": f"Bearer {TOKEN}"}, transport=httpx.MockTransport(script)
        )
        clients.append(client)
        defaults: Options = {"sleep": sleeps, "rng": random.Random(1), "clock": lambda: NOW}
        return HetznerCloudProvider(client, **(defaults | options))

    yield build
    for client in clients:
        await client.aclose()


RETRIED = {
    "409 conflict": api_error(409, "conflict"),
    "502 bad_gateway": api_error(502, "bad_gateway"),
    "504 timeout": api_error(504, "timeout"),
    "429 rate_limit_exceeded": api_error(429, "rate_limit_exceeded"),
    "bare 502": bare(502),
    "bare 504": bare(504),
    "read timeout": raises(httpx.ReadTimeout, "timed out"),
    "connect timeout": raises(httpx.ConnectTimeout, "timed out"),
    "connection refused": raises(httpx.ConnectError, "[Errno 111] Connection refused"),
    "dropped connection": raises(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
    "read error": raises(httpx.ReadError, "connection reset"),
}
NOT_RETRIED = {
    "423 locked": (api_error(423, "locked"), "locked"),
    "409 uniqueness_error": (api_error(409, "uniqueness_error"), "uniqueness_error"),
    "422 invalid_input": (api_error(422, "invalid_input"), "invalid_input"),
    "401 unauthorized": (api_error(401, "unauthorized"), "unauthorized"),
    "403 forbidden": (api_error(403, "forbidden"), "forbidden"),
    "500 server_error": (api_error(500, "server_error"), "server_error"),
    "412 resource_unavailable": (api_error(412, "resource_unavailable"), "resource_unavailable"),
    "bare 503": (bare(503), "503"),
    "bare 409": (bare(409), "409"),
    "bare 429": (bare(429), "429"),
    "bare 401": (bare(401), "401"),
}


@pytest.mark.parametrize("failure", RETRIED.values(), ids=RETRIED.keys())
async def test_a_retryable_failure_is_retried_until_it_succeeds(
    adapter: Adapter, sleeps: Sleeps, failure: Step
) -> None:
    script = Script(failure, failure, ok())

    server = await adapter(script).get_server(42)

    assert server is not None
    assert server.ipv4 == "203.0.113.7"
    assert len(script.requests) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(("failure", "code"), NOT_RETRIED.values(), ids=NOT_RETRIED.keys())
async def test_a_refusal_is_raised_at_once(adapter: Adapter, sleeps: Sleeps, failure: Step, code: str) -> None:
    script = Script(failure, ok())

    with pytest.raises(CloudError) as raised:
        await adapter(script).get_server(42)

    assert raised.value.code == code
    assert not isinstance(raised.value, CloudTransientError)
    assert len(script.requests) == 1
    assert sleeps == []


async def test_unavailable_is_retried_for_a_read_and_refused_at_once_for_a_create(
    adapter: Adapter, sleeps: Sleeps
) -> None:
    unavailable = api_error(503, "unavailable")

    assert await adapter(Script(unavailable, ok())).get_server(42) is not None
    with pytest.raises(CloudError) as raised:
        await adapter(Script(unavailable, ok())).create_server(SPEC)

    assert raised.value.code == "unavailable"
    assert len(sleeps) == 1


async def test_a_delete_retries_while_the_server_is_locked_by_another_action(adapter: Adapter) -> None:
    locked = api_error(423, "locked")
    action = {"action": {"id": 7, "status": "success", "error": None}}
    script = Script(locked, locked, lambda request: httpx.Response(200, json=action))

    assert await adapter(script).delete_server(42) is True
    assert len(script.requests) == 3


async def test_a_refused_token_says_so(adapter: Adapter) -> None:
    with pytest.raises(CloudError) as raised:
        await adapter(Script(api_error(401, "unauthorized"))).get_server(42)

    assert raised.value.reason.startswith("Hetzner: unauthorized: ")
    assert raised.value.reason.endswith("the API token was refused")


async def test_uniqueness_error_raises_name_taken(adapter: Adapter) -> None:
    with pytest.raises(CloudServerNameTaken):
        await adapter(Script(api_error(409, "uniqueness_error"))).create_server(SPEC)


async def test_a_create_whose_answer_was_lost_is_retried_and_reports_the_name_taken(adapter: Adapter) -> None:
    script = Script(raises(httpx.RemoteProtocolError, "Server disconnected"), api_error(409, "uniqueness_error"))

    with pytest.raises(CloudServerNameTaken):
        await adapter(script).create_server(SPEC)

    assert [r.method for r in script.requests] == ["POST", "POST"]


@pytest.mark.parametrize("max_retries", [0, 2, 5])
async def test_gives_up_with_a_transient_error_after_max_retries_plus_one_attempts(
    adapter: Adapter, sleeps: Sleeps, max_retries: int
) -> None:
    script = Script(api_error(502, "bad_gateway"))

    with pytest.raises(CloudTransientError) as raised:
        await adapter(script, max_retries=max_retries).get_server(42)

    assert raised.value.code == "bad_gateway"
    assert len(script.requests) == max_retries + 1
    assert len(sleeps) == max_retries


async def test_network_errors_past_the_retries_become_a_transient_error(adapter: Adapter) -> None:
    with pytest.raises(CloudTransientError) as raised:
        await adapter(Script(raises(httpx.ReadTimeout, "timed out"))).delete_server(42)

    assert raised.value.code == "network_error"
    assert "ReadTimeout" in str(raised.value)


@pytest.mark.parametrize("seed", range(20))
async def test_backoff_waits_are_jittered_within_1_and_2_to_the_n(adapter: Adapter, sleeps: Sleeps, seed: int) -> None:
    with pytest.raises(CloudTransientError):
        await adapter(Script(api_error(504, "timeout")), rng=random.Random(seed)).get_server(42)

    assert len(sleeps) == 5
    assert all(1 <= wait <= min(60, 2**n) for n, wait in enumerate(sleeps))


async def test_backoff_waits_never_exceed_the_cap(adapter: Adapter, sleeps: Sleeps) -> None:
    with pytest.raises(CloudTransientError):
        await adapter(Script(api_error(409, "conflict")), max_retries=10, backoff_cap=5.0).get_server(42)

    assert sleeps[0] == 1
    assert all(1 <= wait <= 5 for wait in sleeps)
    assert max(sleeps) > 2


async def test_a_rate_limited_request_waits_until_ratelimit_reset(adapter: Adapter, sleeps: Sleeps) -> None:
    limited = api_error(429, "rate_limit_exceeded", {"RateLimit-Reset": str(int(NOW) + 7)})

    server = await adapter(Script(limited, ok())).get_server(42)

    assert server is not None
    assert sleeps == [7.0]


async def test_a_ratelimit_reset_sooner_than_the_backoff_does_not_shorten_it(adapter: Adapter, sleeps: Sleeps) -> None:
    limited = api_error(429, "rate_limit_exceeded", {"RateLimit-Reset": str(int(NOW) + 1)})

    await adapter(Script(limited, limited, limited, ok()), rng=random.Random(3)).get_server(42)

    assert sleeps[0] == 1
    assert all(1 <= wait <= 2**n for n, wait in enumerate(sleeps))


@pytest.mark.parametrize("reset_in", [3600, -30])
async def test_a_ratelimit_reset_past_the_cap_or_gone_falls_back_to_the_backoff(
    adapter: Adapter, sleeps: Sleeps, reset_in: int
) -> None:
    limited = api_error(429, "rate_limit_exceeded", {"RateLimit-Reset": str(int(NOW) + reset_in)})

    await adapter(Script(limited, limited, ok())).get_server(42)

    assert sleeps[0] == 1
    assert 1 <= sleeps[1] <= 2


def _chain(error: BaseException | None) -> list[BaseException]:
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


Call = Callable[[HetznerCloudProvider], Awaitable[object]]
FAILING_CALLS: dict[str, tuple[Script, Call]] = {
    "get after dropped connections": (
        Script(raises(httpx.RemoteProtocolError, "Server disconnected")),
        lambda p: p.get_server(1),
    ),
    "create refused": (Script(api_error(401, "unauthorized")), lambda p: p.create_server(SPEC)),
    "create name taken": (Script(api_error(409, "uniqueness_error")), lambda p: p.create_server(SPEC)),
    "list rate limited": (
        Script(api_error(429, "rate_limit_exceeded", {"RateLimit-Reset": str(int(NOW) + 2)})),
        lambda p: p.find_servers({"managed-by": "smoke"}),
    ),
    "delete timing out": (Script(raises(httpx.ReadTimeout, "timed out")), lambda p: p.delete_server(1)),
    "delete action failed": (
        Script(action("running"), action("error", {"code": "action_failed", "message": "Action failed"})),
        lambda p: p.delete_server(1),
    ),
    "garbage answer": (Script(lambda _r: httpx.Response(200, text="not json")), lambda p: p.get_server(1)),
}


@pytest.mark.parametrize(("script", "call"), FAILING_CALLS.values(), ids=FAILING_CALLS.keys())
async def test_the_token_never_reaches_errors_or_logs(
    adapter: Adapter, caplog: pytest.LogCaptureFixture, script: Script, call: Call
) -> None:
    caplog.set_level(logging.DEBUG, logger="smoke.hetzner")

    with pytest.raises(CloudError) as raised:
        await call(adapter(script))

    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in script.requests)
    for error in _chain(raised.value):
        assert not isinstance(error, httpx.HTTPError)
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        assert TOKEN not in repr(vars(error))
    assert caplog.records
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert "Authorization" not in record.getMessage()


async def test_retries_are_logged_with_method_path_and_wait(adapter: Adapter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smoke.hetzner")

    await adapter(Script(api_error(502, "bad_gateway"), ok())).get_server(42)

    assert [r.getMessage() for r in caplog.records if r.name == "smoke.hetzner"] == [
        "Hetzner GET /servers/42 failed (bad_gateway); retry 1 of 5 in 1.00 s"
    ]


async def test_create_sends_location_and_start_after_create_but_no_datacenter(adapter: Adapter) -> None:
    script = Script(ok(201, server={**SERVER, "status": "initializing"}, action={}, next_actions=[]))

    server = await adapter(script).create_server(SPEC)

    assert (server.id, server.status, server.ipv4) == (42, "initializing", "203.0.113.7")
    body = json.loads(script.requests[0].content)
    assert body == {
        "name": SPEC.name,
        "server_type": "cpx22",
        "image": "ubuntu-24.04",
        "location": "fsn1",
        "labels": {"managed-by": "smoke"},
        "user_data": "#cloud-config\n",
        "start_after_create": True,
    }
    assert script.requests[0].headers["Content-Type"] == "application/json"


async def test_find_servers_sends_a_sorted_label_selector_and_follows_next_page(adapter: Adapter) -> None:
    page = {"page": 1, "per_page": 50, "previous_page": None, "last_page": 2, "total_entries": 2}
    script = Script(
        ok(servers=[SERVER], meta={"pagination": {**page, "next_page": 2}}),
        ok(servers=[{**SERVER, "id": 43}], meta={"pagination": {**page, "page": 2, "next_page": None}}),
    )

    servers = await adapter(script).find_servers({"z": "1", "a": "2"})

    assert [s.id for s in servers] == [42, 43]
    assert [dict(r.url.params) for r in script.requests] == [
        {"per_page": "50", "label_selector": "a=2,z=1", "page": "1"},
        {"per_page": "50", "label_selector": "a=2,z=1", "page": "2"},
    ]


async def test_delete_polls_the_action_until_it_succeeds(adapter: Adapter, sleeps: Sleeps) -> None:
    script = Script(action("running"), action("running"), action("success"))

    assert await adapter(script, action_poll_interval=0.25).delete_server(42) is True
    assert [r.url.path for r in script.requests] == ["/v1/servers/42", "/v1/actions/7", "/v1/actions/7"]
    assert sleeps == [0.25, 0.5]  # each wait doubles


async def test_an_action_that_outlasts_the_timeout_is_a_transient_error(adapter: Adapter) -> None:
    with pytest.raises(CloudTransientError) as raised:
        await adapter(Script(action("running")), action_timeout=0.05, sleep=asyncio.sleep).delete_server(42)

    assert raised.value.code == "action_timeout"


async def test_a_404_not_found_is_none_or_false_but_a_bare_404_is_an_error(adapter: Adapter) -> None:
    gone = api_error(404, "not_found")

    assert await adapter(Script(gone)).get_server(42) is None
    assert await adapter(Script(gone)).delete_server(42) is False
    with pytest.raises(CloudError, match="404"):
        await adapter(Script(bare(404))).delete_server(42)


async def test_hetzner_client_targets_the_api_url_with_the_bearer_token() -> None:
    async with hetzner_client(API_URL, TOKEN, timeout=12.0) as client:
        assert client.base_url == httpx.URL(f"{API_URL}/")
        assert client.headers["Authorization"] == f"Bearer {TOKEN}"
        assert client.timeout.read == 12.0
        assert TOKEN not in repr(client.headers)


# --- the request budget: every request spent from it first, every answer's RateLimit-* headers correct it --------

READ, WRITE = RequestKind.READ, RequestKind.WRITE


def with_bucket(remaining: int, capacity: int = 300, status: int = 200, **body: object) -> Script:
    headers = {"RateLimit-Limit": str(capacity), "RateLimit-Remaining": str(remaining), "RateLimit-Reset": "0"}
    return Script(lambda _request: httpx.Response(status, json=body or {"server": SERVER}, headers=headers))


async def test_gets_are_spent_as_reads_and_the_rest_as_writes(adapter: Adapter) -> None:
    budget = FakeRequestBudget(lambda: NOW)
    listing = {"servers": [SERVER], "meta": {"pagination": {"next_page": None}}}
    script = Script(
        lambda _r: httpx.Response(200, json={"server": SERVER}),
        lambda _r: httpx.Response(200, json=listing),
        lambda _r: httpx.Response(201, json={"server": SERVER}),
    )
    cloud = adapter(script, budget=budget)

    await cloud.get_server(42)
    await cloud.find_servers({"managed-by": "smoke"})
    await cloud.create_server(SPEC)

    assert budget.spends == {READ: 2, WRITE: 1}


async def test_an_answer_reporting_a_low_bucket_makes_the_next_read_wait_for_the_refill(
    adapter: Adapter, sleeps: Sleeps
) -> None:
    now = [NOW]
    budget = FakeRequestBudget(lambda: now[0])
    script = with_bucket(remaining=20)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    cloud = adapter(script, budget=budget, sleep=sleep)
    await cloud.get_server(42)
    await cloud.get_server(42)

    assert budget.level.capacity == 300
    assert len(script.requests) == 2
    assert sum(sleeps) >= (31 - 20) * 12  # waited until the bucket held the writes' reserve again


async def test_a_429s_empty_bucket_headers_are_not_taken_as_the_level(adapter: Adapter, sleeps: Sleeps) -> None:
    budget = FakeRequestBudget(lambda: NOW)
    empty = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW) + 3600)}
    script = Script(api_error(429, "rate_limit_exceeded", empty), *with_bucket(3500, capacity=3600).steps)

    await adapter(script, budget=budget).get_server(42)

    assert budget.level.tokens >= 3499  # the 429 was retried after its backoff; the answer after it set the level
    assert len(sleeps) == 1


async def test_action_polls_back_off_up_to_their_cap(adapter: Adapter, sleeps: Sleeps) -> None:
    script = Script(*[action("running")] * 7, action("success"))

    await adapter(script, action_poll_interval=1.0, action_poll_cap=10.0).delete_server(42)

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


async def test_without_a_budget_requests_go_ungoverned(adapter: Adapter, sleeps: Sleeps) -> None:
    await adapter(with_bucket(remaining=0), budget=None).get_server(42)

    assert sleeps == []


def test_the_fake_starts_full_at_hetzners_default() -> None:
    assert FakeRequestBudget(lambda: NOW).level == BucketLevel.full(NOW)
