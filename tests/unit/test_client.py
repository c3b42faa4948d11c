"""``smoke.client`` against ``httpx.MockTransport`` and the API on fakes: requests, parsing, errors, streams."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.client import (
    AnswerLost,
    BadGateway,
    CannotConnect,
    ChatFailed,
    Conflict,
    NoSuchInstance,
    NotAuthenticated,
    ServiceUnavailable,
    SmokeApiError,
    SmokeClient,
    SmokeConnectionError,
    SseEvent,
    UnexpectedResponse,
    ValidationFailed,
)
from smoke.serving import free_port
from smoke.settings import Settings
from smoke.testing.providers import FakeAdaptersProvider
from tests.lifespan import running
from tests.typed import asgi_transport

SMOKE = "/internal/v1/smoke"
INSTANCE = uuid.UUID("7b0c2f0e-9d51-4f5e-a2a6-0d6f3b1c2a11")
Handler = Callable[[httpx.Request], httpx.Response]


def client_of(handler: Handler) -> SmokeClient:
    return SmokeClient("http://smoke.test/", "ops-token", transport=httpx.MockTransport(handler))


def answering(status: int, body: object, seen: list[httpx.Request] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body)

    return handle


def sse(*chunks: str) -> Handler:
    """A 200 ``text/event-stream`` whose body arrives in ``chunks`` (split anywhere, as on the wire)."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk.encode()

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body())

    return handle


async def events_of(client: SmokeClient, message: str = "hi there") -> list[SseEvent]:
    async with client:
        return [event async for event in client.chat(INSTANCE, message)]


async def test_provision_posts_the_body_with_the_bearer_token_and_decodes_the_receipt() -> None:
    seen: list[httpx.Request] = []
    receipt = {"idempotency_key": "k-1", "instance_id": str(INSTANCE), "task_id": f"provision:{INSTANCE}"}

    async with client_of(answering(200, receipt, seen)) as client:
        result = await client.provision("k-1", "agent-default", "fsn1", "small")

    assert result.instance_id == INSTANCE
    assert result.task_id == f"provision:{INSTANCE}"
    assert (seen[0].method, seen[0].url.path) == ("POST", f"{SMOKE}/provision")
    assert seen[0].headers["Authorization"] == "Bearer ops-token"
    assert json.loads(seen[0].content) == {
        "idempotency_key": "k-1",
        "manifest_id": "agent-default",
        "region_id": "fsn1",
        "tier_id": "small",
    }


async def test_poll_quotes_the_key_and_decodes_not_found_yet() -> None:
    seen: list[httpx.Request] = []

    async with client_of(answering(200, {"found": False, "instance_id": None, "status": None}, seen)) as client:
        result = await client.poll("ci run/1")

    assert (result.found, result.instance_id, result.status) == (False, None, None)
    assert seen[0].url.raw_path.decode() == f"{SMOKE}/instances/by-key/ci%20run%2F1"


async def test_status_decodes_hostname_id_and_status() -> None:
    body = {"hostname": "smoke-0123456789ab", "id": str(INSTANCE), "status": "running"}

    async with client_of(answering(200, body)) as client:
        result = await client.status(INSTANCE)

    assert (result.hostname, result.id, result.status) == ("smoke-0123456789ab", INSTANCE, "running")


async def test_delete_sends_delete_and_decodes_the_status() -> None:
    seen: list[httpx.Request] = []

    async with client_of(answering(200, {"instance_id": str(INSTANCE), "status": "deleting"}, seen)) as client:
        result = await client.delete(str(INSTANCE))

    assert (seen[0].method, seen[0].url.path) == ("DELETE", f"{SMOKE}/instances/{INSTANCE}")
    assert result.status == "deleting"


async def test_llm_events_passes_the_window_and_decodes_the_count() -> None:
    seen: list[httpx.Request] = []
    body = {"count": 2, "instance_id": str(INSTANCE), "providers": ["simulated"], "window_seconds": 60}

    async with client_of(answering(200, body, seen)) as client:
        result = await client.llm_events(INSTANCE, window_seconds=60)

    assert seen[0].url.params["window_seconds"] == "60"
    assert (result.count, result.providers, result.window_seconds) == (2, ["simulated"], 60)


async def test_healthz_returns_when_the_service_is_alive() -> None:
    seen: list[httpx.Request] = []

    async with client_of(answering(200, {"status": "ok"}, seen)) as client:
        await client.healthz()

    assert seen[0].url.path == "/healthz"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"detail": "Not authenticated"}, NotAuthenticated),
        (404, {"detail": "Instance not found"}, NoSuchInstance),
        (409, {"detail": "Instance is not running"}, Conflict),
        (502, {"detail": "the agent is down"}, BadGateway),
        (503, {"detail": "Database or queue unavailable, retry later"}, ServiceUnavailable),
        (500, {"detail": "Internal Server Error"}, SmokeApiError),
        (404, {"detail": "Not Found"}, SmokeApiError),
    ],
)
async def test_each_error_status_raises_its_exception_with_the_detail(
    status: int, body: dict[str, str], error: type[SmokeApiError]
) -> None:
    async with client_of(answering(status, body)) as client:
        with pytest.raises(SmokeApiError) as raised:
            await client.status(INSTANCE)

    assert type(raised.value) is error
    assert (raised.value.status, raised.value.detail) == (status, body["detail"])
    assert raised.value.path == f"{SMOKE}/instances/{INSTANCE}"


async def test_a_422_keeps_the_detail_list_and_says_which_field() -> None:
    detail = [{"loc": ["body", "region_id"], "msg": "Unknown region 'nowhere'", "type": "unknown_catalog_id"}]

    async with client_of(answering(422, {"detail": detail})) as client:
        with pytest.raises(ValidationFailed) as raised:
            await client.provision("k-1", "agent-default", "nowhere", "small")

    assert raised.value.errors[0].loc == ["body", "region_id"]
    assert raised.value.detail == "Unknown region 'nowhere' (body.region_id)"


async def test_an_error_without_a_json_body_carries_its_text() -> None:
    async with client_of(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>")) as client:
        with pytest.raises(BadGateway, match="Bad Gateway"):
            await client.healthz()


async def test_a_success_that_is_not_the_smoke_api_raises_unexpected_response() -> None:
    async with client_of(lambda request: httpx.Response(200, text="<html>welcome</html>")) as client:
        with pytest.raises(UnexpectedResponse, match="unexpected response body"):
            await client.poll("k-1")


async def test_connection_refused_raises_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async with SmokeClient(url, "ops-token") as client:
        with pytest.raises(SmokeConnectionError) as raised:
            await client.status(INSTANCE)

    assert str(raised.value) == f"cannot reach {url}: connection refused"
    assert isinstance(raised.value, CannotConnect)


async def test_a_timeout_raises_a_connection_error() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client_of(hang) as client:
        with pytest.raises(AnswerLost, match=re.escape("no answer from http://smoke.test in time")):
            await client.status(INSTANCE)


async def test_a_dropped_connection_means_the_answer_was_lost_not_that_nothing_was_sent() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    async with client_of(drop) as client:
        with pytest.raises(AnswerLost, match=re.escape("the connection to http://smoke.test broke")):
            await client.provision("k-1", "agent-default", "fsn1", "small")


async def test_events_decode_the_history_and_its_last_reason() -> None:
    refused = "Hetzner: unauthorized: unable to authenticate"
    body = {
        "instance_id": str(INSTANCE),
        "events": [
            {"at": "2026-01-02T03:04:05Z", "status": "queued", "reason": None},
            {
                "at": "2026-01-02T03:04:06Z",
                "status": "failed",
                "reason": "Hetzner: unauthorized: unable to authenticate",
            },
        ],
    }
    seen: list[httpx.Request] = []

    async with client_of(answering(200, body, seen)) as client:
        result = await client.events(INSTANCE)

    assert seen[0].url.path == f"{SMOKE}/instances/{INSTANCE}/events"
    assert [event.status for event in result.events] == ["queued", "failed"]
    assert result.events[0].at.year == 2026
    assert result.last_reason == refused


async def test_a_history_that_went_well_has_no_last_reason() -> None:
    body = {"instance_id": str(INSTANCE), "events": [{"at": "2026-01-02T03:04:05Z", "status": "running"}]}

    async with client_of(answering(200, body)) as client:
        assert (await client.events(INSTANCE)).last_reason is None


def summary(number: int, status: str = "running") -> dict[str, object]:
    return {
        "id": str(uuid.UUID(int=number)),
        "hostname": f"smoke-{number:012x}",
        "status": status,
        "manifest_id": "agent-default",
        "region_id": "fsn1",
        "tier_id": "small",
        "created_at": "2026-01-02T03:04:05Z",
        "running_at": "2026-01-02T03:04:15Z",
        "deleted_at": None,
        "provision_seconds": 10.0,
        "reason": None,
    }


async def test_instances_passes_the_filters_and_decodes_a_page() -> None:
    seen: list[httpx.Request] = []

    async with client_of(answering(200, {"instances": [summary(1)], "next_before": "17_ab"}, seen)) as client:
        page = await client.instances(status="running", limit=1, before="18_cd")

    assert dict(seen[0].url.params) == {"status": "running", "limit": "1", "before": "18_cd"}
    assert [(i.hostname, i.provision_seconds) for i in page.instances] == [("smoke-000000000001", 10.0)]
    assert page.next_before == "17_ab"


async def test_the_first_page_sends_neither_status_nor_before() -> None:
    seen: list[httpx.Request] = []

    async with client_of(answering(200, {"instances": [], "next_before": None}, seen)) as client:
        await client.instances()

    assert dict(seen[0].url.params) == {"limit": "50"}


async def test_all_instances_follows_next_before_to_the_last_page() -> None:
    pages = {None: ([1, 2], "c2"), "c2": ([3, 4], "c4"), "c4": ([5], None)}
    asked: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        before = request.url.params.get("before")
        asked.append(before)
        numbers, next_before = pages[before]
        return httpx.Response(200, json={"instances": [summary(n) for n in numbers], "next_before": next_before})

    async with client_of(handle) as client:
        hostnames = [instance.hostname async for instance in client.all_instances(page_size=2)]

    assert hostnames == [f"smoke-{n:012x}" for n in range(1, 6)]
    assert asked == [None, "c2", "c4"]


def openapi(body_schema: dict[str, object], components: dict[str, object] | None = None) -> dict[str, object]:
    operation = {"requestBody": {"content": {"application/json": {"schema": body_schema}}}}
    return {"paths": {f"{SMOKE}/provision": {"post": operation}}, "components": {"schemas": components or {}}}


async def test_provision_choices_are_the_enums_of_the_openapi_document() -> None:
    regions = {"type": "string", "enum": ["nbg1", "fsn1"]}
    body = {"properties": {"manifest_id": {"enum": ["agent-default"]}, "region_id": {"$ref": "#/components/schemas/R"}}}
    document = openapi({"$ref": "#/components/schemas/P"}, {"P": body, "R": regions})
    seen: list[httpx.Request] = []

    async with client_of(answering(200, document, seen)) as client:
        choices = await client.provision_choices()

    assert seen[0].url.path == "/schema/openapi.json"
    assert choices == {"manifest_id": ["agent-default"], "region_id": ["fsn1", "nbg1"]}


async def test_a_document_without_enums_offers_no_choices() -> None:
    document = openapi({"properties": {"region_id": {"type": "string"}}})

    async with client_of(answering(200, document)) as client:
        assert await client.provision_choices() == {}


async def test_the_events_and_the_list_of_the_real_api_decode() -> None:
    app = create_app(make_container(Settings(ops_bearer_token="ops-token"), FakeAdaptersProvider()))
    async with running(app), SmokeClient("http://api", "ops-token", transport=asgi_transport(app)) as client:
        accepted = await client.provision("k-1", "agent-default", "fsn1", "small")

        events = await client.events(accepted.instance_id)
        listed = [instance.id async for instance in client.all_instances()]

    assert [event.status for event in events.events] == ["queued"]
    assert listed == [accepted.instance_id]


@pytest.mark.parametrize("url", ["nope", "ftp://host", "http://", "http://[::1", "http://host:99999"])
def test_a_malformed_base_url_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="malformed base URL"):
        SmokeClient(url, "ops-token")


async def test_chat_yields_the_events_as_they_arrive_until_done() -> None:
    stream = sse(
        ": keep-alive\n\n",
        'event: delta\nid: 1\ndata: {"text": "hi"}\n\nevent: del',
        'ta\nid: 2\ndata: {"text": " there"}\r\n\r\n',
        'event: done\nid: 3\ndata: {"usage": {"provider": "simulated"}}\n\n',
    )

    events = await events_of(client_of(stream))

    assert [(e.event, e.id) for e in events] == [("delta", "1"), ("delta", "2"), ("done", "3")]
    assert [json.loads(e.data).get("text") for e in events[:2]] == ["hi", " there"]


async def test_chat_posts_the_message() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse('event: done\ndata: {"usage": {}}\n\n')(request)

    await events_of(client_of(handle), "hello")

    assert (seen[0].method, seen[0].url.path) == ("POST", f"{SMOKE}/instances/{INSTANCE}/chat")
    assert json.loads(seen[0].content) == {"message": "hello"}


async def test_an_error_event_raises_chat_failed_after_the_events_before_it() -> None:
    stream = sse('event: delta\ndata: {"text": "hi"}\n\n', 'event: error\ndata: {"detail": "agent lost"}\n\n')
    received: list[SseEvent] = []

    async def consume() -> None:
        async with client_of(stream) as client:
            async for event in client.chat(INSTANCE, "hi"):
                received.append(event)

    with pytest.raises(ChatFailed, match="agent lost"):
        await consume()

    assert [e.event for e in received] == ["delta"]


async def test_a_stream_that_ends_without_done_raises_chat_failed() -> None:
    with pytest.raises(ChatFailed, match="without its done event"):
        await events_of(client_of(sse('event: delta\ndata: {"text": "hi"}\n\n')))


async def test_chat_refused_before_streaming_raises_the_api_error() -> None:
    with pytest.raises(Conflict, match="not running"):
        await events_of(client_of(answering(409, {"detail": "Instance is not running (provisioning)"})))


def test_importing_the_client_loads_no_framework_or_database_driver() -> None:
    probe = (
        "import sys, smoke.client; print(sorted(m for m in ('litestar', 'sqlalchemy', 'asyncpg') if m in sys.modules))"
    )

    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()

    assert loaded == "[]"
