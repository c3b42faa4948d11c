"""A typed async client of the smoke API (SPEC §2), for ``smoke check`` and for CI scripts.

One method per endpoint; responses decode into msgspec Structs; the API's error responses raise typed exceptions
(``SmokeApiError`` and its subclasses), network problems ``SmokeConnectionError``. The chat turn is an async iterator
of ``ChatEvent``. This module loads httpx and msgspec only: no framework, no database driver::

    async with SmokeClient("http://127.0.0.1:8000", token) as smoke:
        receipt = await smoke.provision("ci-run-1", "agent-default", "fsn1", "small")
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
import msgspec

from smoke.adapters.sse import SseParser

__all__ = (
    "AgentUnavailable",
    "ChatEvent",
    "ChatFailed",
    "Conflict",
    "Deletion",
    "InstanceNotFound",
    "InstanceStatus",
    "LlmEvents",
    "NotAuthenticated",
    "PollResult",
    "ProvisionReceipt",
    "ServiceUnavailable",
    "SmokeApiError",
    "SmokeClient",
    "SmokeClientError",
    "SmokeConnectionError",
    "UnexpectedResponse",
    "ValidationFailed",
    "ValidationItem",
    "normalized_base_url",
)

SMOKE: Final = "/internal/v1/smoke"

T = TypeVar("T")


class ProvisionReceipt(msgspec.Struct, frozen=True):
    idempotency_key: str
    instance_id: UUID
    task_id: str


class PollResult(msgspec.Struct, frozen=True):
    found: bool
    instance_id: UUID | None = None
    status: str | None = None


class InstanceStatus(msgspec.Struct, frozen=True):
    hostname: str
    id: UUID
    status: str


class Deletion(msgspec.Struct, frozen=True):
    instance_id: UUID
    status: str


class LlmEvents(msgspec.Struct, frozen=True):
    count: int
    instance_id: UUID
    providers: list[str]
    window_seconds: int


class ChatEvent(msgspec.Struct, frozen=True):
    """One Server-Sent Event of a chat turn: ``delta`` (``{"text"}``), ``done`` (``{"usage"}``) or another name."""

    event: str
    data: str
    id: str | None = None


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


class InstanceNotFound(SmokeApiError):
    """404 ``Instance not found``: unknown id, or not the smoke customer's. Other 404s raise ``SmokeApiError``."""


class Conflict(SmokeApiError):
    """409: the action does not fit the instance's state, or the live-instance cap is reached."""


class ValidationFailed(SmokeApiError):
    """422: ``errors`` holds the API's ``detail`` list; the message joins their ``msg`` with their ``loc``."""

    def __init__(self, status: int, errors: list[ValidationItem], *, method: str = "", path: str = "") -> None:
        self.errors = errors
        text = "; ".join(f"{item.msg} ({'.'.join(map(str, item.loc))})" for item in errors) or "validation failed"
        super().__init__(status, text, method=method, path=path)


class AgentUnavailable(SmokeApiError):
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
    502: AgentUnavailable,
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

    async def provision(self, idempotency_key: str, manifest_id: str, region_id: str, tier_id: str) -> ProvisionReceipt:
        """``POST /provision``: accept (or replay) the provision of ``idempotency_key``.

        Raises:
            ValidationFailed: an unknown catalog id, or the key reused with another body.
            Conflict: the live-instance cap is reached.
        """
        body = {"idempotency_key": idempotency_key, "manifest_id": manifest_id, "region_id": region_id}
        return await self._call("POST", f"{SMOKE}/provision", ProvisionReceipt, json=body | {"tier_id": tier_id})

    async def poll(self, idempotency_key: str) -> PollResult:
        """``GET /instances/by-key/{key}``: ``found`` once the worker has inserted the instance row."""
        return await self._call("GET", f"{SMOKE}/instances/by-key/{quote(idempotency_key, safe='')}", PollResult)

    async def status(self, instance_id: UUID | str) -> InstanceStatus:
        """``GET /instances/{id}``; soft-deleted instances answer too (``deleting``, ``deleted``)."""
        return await self._call("GET", f"{SMOKE}/instances/{instance_id}", InstanceStatus)

    async def delete(self, instance_id: UUID | str) -> Deletion:
        """``DELETE /instances/{id}``: soft-delete and queue the server's cleanup; repeating it is harmless."""
        return await self._call("DELETE", f"{SMOKE}/instances/{instance_id}", Deletion)

    async def llm_events(self, instance_id: UUID | str, window_seconds: int = 900) -> LlmEvents:
        """``GET /instances/{id}/llm-events``: the LLM usage events of the last ``window_seconds``."""
        path = f"{SMOKE}/instances/{instance_id}/llm-events"
        return await self._call("GET", path, LlmEvents, params={"window_seconds": window_seconds})

    async def healthz(self) -> None:
        """``GET /healthz``: return when the process answers alive; raise otherwise."""
        try:
            response = await self._http.get("/healthz")
        except httpx.TransportError as error:
            raise _connection_error(self.base_url, "/healthz", error) from None
        if not response.is_success:
            raise _api_error(response, "GET", "/healthz")

    async def chat(self, instance_id: UUID | str, message: str) -> AsyncIterator[ChatEvent]:
        """``POST /instances/{id}/chat``: the agent's events as they arrive, ``done`` included, then the end.

        Raises:
            Conflict: the instance is not running.
            AgentUnavailable: the agent could not be reached, before anything was streamed.
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
                        yield ChatEvent(event.event, event.data, event.id)
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


def _connection_error(base_url: str, path: str, error: httpx.TransportError) -> SmokeConnectionError:
    """One readable line for httpx's transport errors."""
    if isinstance(error, httpx.TimeoutException):
        return SmokeConnectionError(f"no answer from {base_url} in time ({type(error).__name__} on {path})")
    if isinstance(error, httpx.ConnectError):
        return SmokeConnectionError(f"cannot reach {base_url}: {_reason(error)}")
    return SmokeConnectionError(f"the connection to {base_url} broke ({path}): {_reason(error)}")


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
        kind: type[SmokeApiError] = InstanceNotFound if detail == "Instance not found" else SmokeApiError
    else:
        kind = _ERRORS.get(status, SmokeApiError)
    return kind(status, detail, method=method, path=path)


def _error_detail(data: str) -> str:
    try:
        detail = msgspec.json.decode(data, type=_Detail).detail
    except msgspec.DecodeError:
        return data or "the chat stream ended with an error"
    return str(detail) if detail else data
