"""A minimal ASGI toolkit for the simulators: requests, routing, JSON and event-stream responses.

The simulated cloud is a plain ASGI callable rather than a framework app because it must control the
wire exactly: the Hetzner error envelope on unknown routes, headers on every response, and connections
that are dropped without an answer or cut in the middle of a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

import msgspec

__all__ = (
    "ASGIApp",
    "Abort",
    "DropConnection",
    "EventStream",
    "HttpError",
    "JsonResponse",
    "NoRoute",
    "PageResponse",
    "Receive",
    "Request",
    "Response",
    "Route",
    "Router",
    "Scope",
    "Send",
    "read_request",
    "send_response",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

H = TypeVar("H")


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request, read completely. Header names are lower case; ``params`` are the path parameters."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, int] = field(default_factory=dict)

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, or None."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """``body`` encoded as JSON; a 204 is sent without a body (and without ``Content-Type``)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_default_headers(self, headers: Mapping[str, str]) -> JsonResponse:
        """This response with ``headers`` added, except those it sets itself."""
        return replace(self, headers={**headers, **self.headers})


@dataclass(frozen=True, slots=True)
class PageResponse:
    """A response that is not JSON, such as the HTML error page a load balancer sends."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class EventStream:
    """A ``200 text/event-stream`` response; the generator yields encoded events.

    The generator is closed (``GeneratorExit`` or ``CancelledError`` inside it) when the client disconnects.
    It raises :class:`DropConnection` to cut the connection without ending the stream properly.
    """

    events: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class Abort:
    """No response at all: the connection is closed as if the server had crashed."""


Response = JsonResponse | PageResponse | EventStream | Abort


class DropConnection(Exception):
    """Raised by an event stream to abort its connection in the middle of the body."""


class HttpError(Exception):
    """Raised by a handler to answer with ``response`` instead."""

    def __init__(self, response: JsonResponse) -> None:
        super().__init__(response.status)
        self.response = response


class NoRoute(Exception):
    """No route matches; ``allowed`` holds the methods of routes whose path matches (empty: unknown path)."""

    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(allowed)
        self.allowed = allowed


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    """``template`` names integer path parameters in braces, e.g. ``/v1/servers/{id}``."""

    method: str
    template: str
    handler: H

    @property
    def name(self) -> str:
        """How request counts name the route: ``"GET /v1/servers/{id}"``."""
        return f"{self.method} {self.template}"

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[0-9]{1,18})", self.template) + "$")


class Router(Generic[H]):
    def __init__(self, routes: list[Route[H]]) -> None:
        self._routes = [(route, route.pattern()) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route[H], dict[str, int]]:
        """The route for ``method`` and ``path`` and its path parameters.

        Raises:
            NoRoute: nothing matches.
        """
        allowed: set[str] = set()
        for route, pattern in self._routes:
            if found := pattern.match(path):
                if route.method == method:
                    return route, {name: int(value) for name, value in found.groupdict().items()}
                allowed.add(route.method)
        raise NoRoute(frozenset(allowed))


async def read_request(scope: Scope, receive: Receive) -> Request:
    """Read the whole request body and wrap the scope."""
    chunks: list[bytes] = []
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
        headers={name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]},
        body=b"".join(chunks),
    )


async def send_response(response: Response, send: Send, receive: Receive) -> None:
    match response:
        case JsonResponse():
            await _send_json(response, send)
        case PageResponse():
            await _send_page(response, send)
        case EventStream():
            await _send_event_stream(response, send, receive)
        case Abort():
            await _abort_connection(send, receive)


async def _send_json(response: JsonResponse, send: Send) -> None:
    no_content = response.status == 204
    body = b"" if no_content else msgspec.json.encode(response.body)
    headers = [
        *([] if no_content else [(b"content-type", b"application/json")]),
        (b"content-length", str(len(body)).encode()),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_page(response: PageResponse, send: Send) -> None:
    headers = [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"content-length", str(len(response.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})


async def _send_event_stream(stream: EventStream, send: Send, receive: Receive) -> None:
    """Send the events as they come, until the generator ends, asks to drop the connection, or the client leaves."""
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    pumping = asyncio.ensure_future(_pump(stream.events, send))
    disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((pumping, disconnected), return_when=asyncio.FIRST_COMPLETED)
        if pumping.done() and isinstance(pumping.exception(), DropConnection):
            disconnected.cancel()
            await _abort_connection(send, receive)
        elif pumping.done():
            pumping.result()
    finally:
        for task in (pumping, disconnected):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DropConnection):
                await task


async def _pump(events: AsyncGenerator[bytes, None], send: Send) -> None:
    try:
        async for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await events.aclose()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _abort_connection(send: Send, receive: Receive) -> None:
    """Close the TCP connection without completing (or even starting) the response.

    uvicorn hands the app the ``send`` method of its request cycle, whose ``transport`` we close: the client sees
    the connection end with no status line, or in the middle of a chunked body. The transport is recognised by
    what it does, not by its class: uvloop's transports (``smoke simulate-cloud`` and ``smoke up`` run on uvloop)
    do not derive from ``asyncio.BaseTransport``. Servers that do not expose their transport get an exception
    instead, which they answer by closing the connection (after a 500 status line if nothing was sent yet).
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    close = getattr(transport, "close", None)
    if not (callable(close) and callable(getattr(transport, "is_closing", None))):
        raise ConnectionAbortedError("simulated dropped connection")
    close()
    await _wait_for_disconnect(receive)
