"""A typed async client of the smoke API, for ``smoke check`` and for CI scripts.

One method per endpoint; responses decode into msgspec Structs named for the answer they hold (``*Response``); the
API's error responses raise typed exceptions (``SmokeApiError`` and its subclasses), network problems
``SmokeConnectionError`` (``CannotConnect`` when the request never left, ``AnswerLost`` when it may have arrived).
The chat turn is an async iterator of ``SseEvent``. This module loads httpx and msgspec only: no framework, no
database driver, nothing of the server's code (import-linter keeps it so)::

    async with SmokeClient("http://127.0.0.1:8000", token) as smoke:
        accepted = await smoke.provision("ci-run-1", "agent-default", "fsn1", "small")
        async for instance in smoke.all_instances(status="running"):
            print(instance.hostname)
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
import msgspec

from smoke.sse import SseEvent, SseParser

__all__ = (
    "PROVISION_CHOICE_FIELDS",
    "AnswerLost",
    "BadGateway",
    "CannotConnect",
    "ChatFailed",
    "Conflict",
    "DeleteResponse",
    "EventResponse",
    "EventsResponse",
    "InstanceSummaryResponse",
    "InstancesResponse",
    "LlmEventsResponse",
    "NoSuchInstance",
    "NotAuthenticated",
    "PollResponse",
    "ProvisionResponse",
    "ServiceUnavailable",
    "SmokeApiError",
    "SmokeClient",
    "SmokeClientError",
    "SmokeConnectionError",
    "SseEvent",
    "StatusResponse",
    "UnexpectedResponse",
    "ValidationFailed",
    "ValidationItem",
    "normalized_base_url",
)

SMOKE: Final = "/internal/v1/smoke"
OPENAPI: Final = "/schema/openapi.json"
PROVISION_CHOICE_FIELDS: Final = ("manifest_id", "region_id", "tier_id")
"""The fields of Smoke Provision whose valid values are the configured catalog's ids."""

T = TypeVar("T")


class ProvisionResponse(msgspec.Struct, frozen=True):
    """Smoke Provision: the request is accepted (or was, for a replay of its key)."""

    idempotency_key: str
    instance_id: UUID
    task_id: str


class PollResponse(msgspec.Struct, frozen=True):
    """Smoke Poll: ``found`` once the worker has inserted the instance row of the key."""

    found: bool
    instance_id: UUID | None = None
    status: str | None = None


class StatusResponse(msgspec.Struct, frozen=True):
    """Smoke Status."""

    hostname: str
    id: UUID
    status: str


class DeleteResponse(msgspec.Struct, frozen=True):
    """Smoke Delete: ``deleting`` until the cleanup job confirmed the server gone, then ``deleted``."""

    instance_id: UUID
    status: str


class LlmEventsResponse(msgspec.Struct, frozen=True):
    """Smoke Llm Events: the LLM calls the instance's agent reported within the window."""

    count: int
    instance_id: UUID
    providers: list[str]
    window_seconds: int


class EventResponse(msgspec.Struct, frozen=True):
    """One change of an instance's status, or a note while it stays (``retrying: ...``), with its reason."""

    at: datetime
    status: str
    reason: str | None = None


class EventsResponse(msgspec.Struct, frozen=True):
    """Smoke Events: the instance's history, oldest first."""

    instance_id: UUID
    events: list[EventResponse]

    @property
    def last_reason(self) -> str | None:
        """The reason of the latest event: why it failed, or what it is retrying now; None when all went well."""
        return self.events[-1].reason if self.events else None


class InstanceSummaryResponse(msgspec.Struct, frozen=True):
    """One instance of Smoke Instances."""

    id: UUID
    hostname: str
    status: str
    manifest_id: str
    region_id: str
    tier_id: str
    created_at: datetime
    running_at: datetime | None = None
    deleted_at: datetime | None = None
    provision_seconds: float | None = None
    reason: str | None = None


class InstancesResponse(msgspec.Struct, frozen=True):
    """One page of Smoke Instances, newest first; ``next_before`` asks for the next page (None on the last)."""

    instances: list[InstanceSummaryResponse]
    next_before: str | None = None


class ValidationItem(msgspec.Struct, frozen=True):
    """One entry of a 422 ``detail`` list: ``loc`` such as ``["body", "region_id"]``."""

    loc: list[str | int]
    msg: str
    type: str


class _Detail(msgspec.Struct):
    detail: Any = None


class SmokeClientError(Exception):
    """Base of everything this client raises."""


class SmokeConnectionError(SmokeClientError):
    """The API could not be reached or the connection broke (refused, unknown host, timeout, reset)."""


class CannotConnect(SmokeConnectionError):
    """No connection could be made (refused, unknown host, connect timeout): the request never reached the API."""


class AnswerLost(SmokeConnectionError):
    """The request was sent, and its answer never came (read timeout, connection dropped): it may have been acted on."""


class SmokeApiError(SmokeClientError):
    """The API answered an error status; ``detail`` is its ``detail`` field (or the body's text)."""

    def __init__(self, status: int, detail: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        super().__init__(f"{status} {detail}")


class NotAuthenticated(SmokeApiError):
    """401: the bearer token is missing or wrong."""


class NoSuchInstance(SmokeApiError):
    """404 ``Instance not found``: unknown id, or not the smoke customer's. Other 404s raise ``SmokeApiError``."""


class Conflict(SmokeApiError):
    """409: the action does not fit the instance's state, or the live-instance cap is reached."""


class ValidationFailed(SmokeApiError):
    """422: ``errors`` holds the API's ``detail`` list; the message joins their ``msg`` with their ``loc``."""

    def __init__(self, status: int, errors: list[ValidationItem], *, method: str = "", path: str = "") -> None:
        self.errors = errors
        text = "; ".join(f"{item.msg} ({'.'.join(map(str, item.loc))})" for item in errors) or "validation failed"
        super().__init__(status, text, method=method, path=path)


class BadGateway(SmokeApiError):
    """502: the agent VPS could not be reached or refused, before anything was streamed."""


class ServiceUnavailable(SmokeApiError):
    """503: the API's database or queue is unavailable; retrying later may succeed."""


class UnexpectedResponse(SmokeApiError):
    """A success status whose body is not what the smoke API answers (is the base URL another service?)."""


class ChatFailed(SmokeClientError):
    """The chat stream began and then failed: it ended with ``event: error``, or without its ``done`` event."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


_ERRORS: Final[dict[int, type[SmokeApiError]]] = {
    401: NotAuthenticated,
    409: Conflict,
    502: BadGateway,
    503: ServiceUnavailable,
}


class SmokeClient:
    """An async client of the smoke API at ``base_url`` (``http(s)://host[:port]``), as ``Bearer <token>``.

    Use it as an async context manager; ``timeout`` (seconds) bounds connecting and each read, so a chat stream may
    last longer as long as bytes (or keep-alive comments) keep coming. ``transport`` replaces the network (tests).

    Raises:
        ValueError: ``base_url`` is not an absolute http(s) URL.
    """

    def __init__(
        self, base_url: str, token: str, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = normalized_base_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def provision(
        self, idempotency_key: str, manifest_id: str, region_id: str, tier_id: str
    ) -> ProvisionResponse:
        """``POST /provision``: accept (or replay) the provision of ``idempotency_key``.

        Raises:
            ValidationFailed: an unknown catalog id, or the key reused with another body.
            Conflict: the live-instance cap is reached.
        """
        body = {"idempotency_key": idempotency_key, "manifest_id": manifest_id, "region_id": region_id}
        return await self._call("POST", f"{SMOKE}/provision", ProvisionResponse, json=body | {"tier_id": tier_id})

    async def poll(self, idempotency_key: str) -> PollResponse:
        """``GET /instances/by-key/{key}``: ``found`` once the worker has inserted the instance row."""
        return await self._call("GET", f"{SMOKE}/instances/by-key/{quote(idempotency_key, safe='')}", PollResponse)

    async def status(self, instance_id: UUID | str) -> StatusResponse:
        """``GET /instances/{id}``; soft-deleted instances answer too (``deleting``, ``deleted``)."""
        return await self._call("GET", f"{SMOKE}/instances/{instance_id}", StatusResponse)

    async def delete(self, instance_id: UUID | str) -> DeleteResponse:
        """``DELETE /instances/{id}``: soft-delete and queue the server's cleanup; repeating it is harmless."""
        return await self._call("DELETE", f"{SMOKE}/instances/{instance_id}", DeleteResponse)

    async def llm_events(self, instance_id: UUID | str, window_seconds: int = 900) -> LlmEventsResponse:
        """``GET /instances/{id}/llm-events``: the LLM usage events of the last ``window_seconds``."""
        path = f"{SMOKE}/instances/{instance_id}/llm-events"
        return await self._call("GET", path, LlmEventsResponse, params={"window_seconds": window_seconds})

    async def events(self, instance_id: UUID | str) -> EventsResponse:
        """``GET /instances/{id}/events``: the instance's status history with reasons, oldest first."""
        return await self._call("GET", f"{SMOKE}/instances/{instance_id}/events", EventsResponse)

    async def instances(
        self, *, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> InstancesResponse:
        """``GET /instances``: one page of the smoke customer's instances, newest first.

        Args:
            status: only instances in this status (``running``, ``failed``, ...).
            limit: instances per page, 1..200.
            before: the ``next_before`` of the previous page; None for the first page.
        """
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if before is not None:
            params["before"] = before
        return await self._call("GET", f"{SMOKE}/instances", InstancesResponse, params=params)

    async def all_instances(
        self, *, status: str | None = None, page_size: int = 50
    ) -> AsyncIterator[InstanceSummaryResponse]:
        """Every instance of ``GET /instances``, newest first, fetching page after page as the iteration goes."""
        before: str | None = None
        while True:
            page = await self.instances(status=status, limit=page_size, before=before)
            for instance in page.instances:
                yield instance
            if page.next_before is None:
                return
            before = page.next_before

    async def provision_choices(self) -> dict[str, list[str]]:
        """The values Smoke Provision accepts for each of ``PROVISION_CHOICE_FIELDS``, from the API's OpenAPI document.

        A field whose schema lists no ``enum`` is left out, so an API that does not publish its catalog answers ``{}``.
        """
        document = await self._call("GET", OPENAPI, dict[str, Any])
        return _provision_choices(document)

    async def healthz(self) -> None:
        """``GET /healthz``: return when the process answers alive; raise otherwise."""
        try:
            response = await self._http.get("/healthz")
        except httpx.TransportError as error:
            raise _connection_error(self.base_url, "/healthz", error) from None
        if not response.is_success:
            raise _api_error(response, "GET", "/healthz")

    async def chat(self, instance_id: UUID | str, message: str) -> AsyncIterator[SseEvent]:
        """``POST /instances/{id}/chat``: the agent's events as they arrive, ``done`` included, then the end.

        Raises:
            Conflict: the instance is not running.
            BadGateway: the agent could not be reached, before anything was streamed.
            ChatFailed: the stream ended with ``event: error`` (not yielded) or without ``done``.
            SmokeConnectionError: the API could not be reached, or the connection broke mid-stream.
        """
        path = f"{SMOKE}/instances/{instance_id}/chat"
        parser = SseParser()
        try:
            async with self._http.stream("POST", path, json={"message": message}) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _api_error(response, "POST", path)
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        if event.event == "error":
                            raise ChatFailed(_error_detail(event.data))
                        yield event
                        if event.event == "done":
                            return
        except httpx.TransportError as error:
            raise _connection_error(self.base_url, path, error) from None
        raise ChatFailed("the chat stream ended without its done event")

    async def _call(self, method: str, path: str, into: type[T], **kwargs: Any) -> T:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise _connection_error(self.base_url, path, error) from None
        if not response.is_success:
            raise _api_error(response, method, path)
        try:
            return msgspec.json.decode(response.content, type=into)
        except msgspec.DecodeError as error:
            detail = f"unexpected response body ({error})"
            raise UnexpectedResponse(response.status_code, detail, method=method, path=path) from None


_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _connection_error(base_url: str, path: str, error: httpx.TransportError) -> SmokeConnectionError:
    """One readable line for httpx's transport errors, typed by whether the request may have reached the API."""
    kind = CannotConnect if isinstance(error, _NOT_SENT) else AnswerLost
    if isinstance(error, httpx.TimeoutException):
        return kind(f"no answer from {base_url} in time ({type(error).__name__} on {path})")
    if isinstance(error, httpx.ConnectError):
        return kind(f"cannot reach {base_url}: {_reason(error)}")
    return kind(f"the connection to {base_url} broke ({path}): {_reason(error)}")


def _reason(error: BaseException) -> str:
    """The root cause in a few words: ``connection refused``, ``unknown host``, or the innermost message."""
    seen: set[int] = set()
    current: BaseException | None = error
    innermost = str(error) or type(error).__name__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, OSError) and current.errno == errno.ECONNREFUSED:
            return "connection refused"
        innermost = str(current) or innermost
        current = current.__cause__ or current.__context__
    return innermost


def normalized_base_url(base_url: str) -> str:
    """``base_url`` without its trailing slash.

    Raises:
        ValueError: it is not an absolute ``http(s)://host[:port]`` URL; the message says so in one line.
    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise ValueError(f"malformed base URL {base_url!r}: {error}") from None
    if url.scheme not in ("http", "https") or not url.host or not 0 < (url.port or 80) < 65536:
        raise ValueError(f"malformed base URL {base_url!r}: expected http(s)://host[:port]")
    return base_url.rstrip("/")


def _api_error(response: httpx.Response, method: str, path: str) -> SmokeApiError:
    status = response.status_code
    try:
        detail = msgspec.json.decode(response.content, type=_Detail).detail
    except msgspec.DecodeError:
        detail = None
    if status == 422 and isinstance(detail, list):
        try:
            items = msgspec.convert(detail, list[ValidationItem])
        except msgspec.ValidationError:
            items = []
        return ValidationFailed(status, items, method=method, path=path)
    if not isinstance(detail, str):
        detail = response.text.strip()[:200] or response.reason_phrase
    if status == 404:
        kind: type[SmokeApiError] = NoSuchInstance if detail == "Instance not found" else SmokeApiError
    else:
        kind = _ERRORS.get(status, SmokeApiError)
    return kind(status, detail, method=method, path=path)


def _provision_choices(document: dict[str, Any]) -> dict[str, list[str]]:
    """The ``enum`` of each catalog field in the body schema of Smoke Provision."""
    try:
        operation = document["paths"][f"{SMOKE}/provision"]["post"]
        body = _resolved(document, operation["requestBody"]["content"]["application/json"]["schema"])
        fields = {name: _resolved(document, body["properties"].get(name, {})) for name in PROVISION_CHOICE_FIELDS}
        return {name: sorted(map(str, schema["enum"])) for name, schema in fields.items() if "enum" in schema}
    except (KeyError, TypeError, AttributeError):  # a document of another shape: no choices to tell
        return {}


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or the component its ``$ref`` names."""
    if isinstance(ref := schema.get("$ref"), str):
        resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _error_detail(data: str) -> str:
    try:
        detail = msgspec.json.decode(data, type=_Detail).detail
    except msgspec.DecodeError:
        return data or "the chat stream ended with an error"
    return str(detail) if detail else data
