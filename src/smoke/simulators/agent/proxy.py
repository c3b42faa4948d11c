"""``/agents/{server_id}/<path>`` relayed to a process agent on its loopback port (``--agents process``).

The request goes on as it came (method, path, query, body, headers but ``Host`` and the hop-by-hop ones) to
``http://127.0.0.1:<port>/<path>``; the answer comes back with its status and headers (but the hop-by-hop ones,
``Date`` and ``Server``, which the simulator's server sets) and its body relayed chunk by chunk as the agent sends
it, undecoded: an event stream is never buffered. A client that goes away closes the connection to the agent.

Nothing answering on the port (connection refused: the agent is starting, has exited, or was never started) is
503 ``{"detail": ...}``, as for a server that has not booted; a connection the agent closes or resets before its
status line is 502, a timeout 504. A connection the agent breaks in the middle of the body is broken to the client
too. A ``POST /v1/chat`` answered 200 with an event stream is recorded in ``/_sim/state`` ``chats``; its outcome is
``done`` or ``error`` (the last such event seen), ``incomplete`` (ended without either), ``agent_disconnected``,
``dropped_by_fault`` or ``client_disconnected``. Fault ``agent.fail_mid_stream_ratio`` cuts the connection right
after the first ``delta`` event, as in the inline mode.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from urllib.parse import urlencode

import httpx
import msgspec

from smoke.simulators.agent.processes import AGENT_HOST
from smoke.simulators.asgi import DropConnection, JsonResponse, Request, Response, StreamedResponse
from smoke.simulators.world import ChatRecord, World

__all__ = ("AgentProxy", "EventScanner")

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "host", "content-length"}
)
_NO_RELAY = (_HOP_BY_HOP - {"content-length"}) | {"date", "server"}
_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=5.0)


class _ChatRequest(msgspec.Struct):
    message: str


class AgentProxy:
    """One HTTP client (no connection pool: the reference agent closes each connection) for every agent."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def forward(self, world: World, server_id: int, port: int, path: str, request: Request) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=_TIMEOUT, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
            )
        query = urlencode([(name, value) for name, values in request.query.items() for value in values])
        url = f"http://{AGENT_HOST}:{port}{path}" + (f"?{query}" if query else "")
        headers = [(name, value) for name, value in request.headers.items() if name not in _HOP_BY_HOP]
        upstream = self._client.build_request(request.method, url, headers=headers, content=request.body)
        try:
            response = await self._client.send(upstream, stream=True)
        except httpx.ConnectError:
            return _error(503, f"the agent is not answering: connection refused on {AGENT_HOST}:{port}")
        except httpx.TimeoutException as error:
            return _error(504, f"the agent did not answer in time ({type(error).__name__})")
        except httpx.TransportError as error:
            return _error(502, f"the agent closed the connection without answering ({type(error).__name__})")
        content_type = response.headers.get("content-type", "")
        is_stream = content_type.startswith("text/event-stream") and "content-encoding" not in response.headers
        record = None
        drop = False
        if request.method == "POST" and path == "/v1/chat" and response.status_code == 200 and is_stream:
            record = ChatRecord(server_id=server_id, message=_message(request.body), started_at=world.settings.clock())
            world.chats.append(record)
            drop = world.chance(world.faults.agent.fail_mid_stream_ratio)
        relayed = tuple((name, value) for name, value in response.headers.multi_items() if name not in _NO_RELAY)
        body = _relay(response, world, record, EventScanner() if is_stream else None, drop_after_first_delta=drop)
        return StreamedResponse(response.status_code, relayed, body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _relay(
    response: httpx.Response,
    world: World,
    record: ChatRecord | None,
    scanner: EventScanner | None,
    *,
    drop_after_first_delta: bool,
) -> AsyncGenerator[bytes, None]:
    """The agent's body as it arrives; keeps ``record`` up to date and applies the mid-stream fault."""
    ended: str | None = None
    outcome = "client_disconnected"
    try:
        try:
            async for chunk in response.aiter_raw():
                for end, name in scanner.feed(chunk) if scanner is not None else ():
                    if name in ("done", "error"):
                        ended = name
                    if drop_after_first_delta and name == "delta":
                        outcome = "dropped_by_fault"
                        yield chunk[:end]
                        raise DropConnection
                yield chunk
        except httpx.TransportError:
            outcome = "agent_disconnected"
            raise DropConnection from None
        outcome = ended or "incomplete"
    finally:
        await response.aclose()
        if record is not None:
            record.end(outcome, world.settings.clock())


class EventScanner:
    """Finds, in a byte stream of Server-Sent Events cut anywhere, where each event ends and its name."""

    def __init__(self) -> None:
        self._partial = b""
        self._name: str | None = None
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[tuple[int, str]]:
        """``(offset just past its blank line in chunk, event name)`` for each event that ends in ``chunk``."""
        ends: list[tuple[int, str]] = []
        start = 0
        while (newline := chunk.find(b"\n", start)) != -1:
            line = (self._partial + chunk[start:newline]).rstrip(b"\r")
            self._partial, start = b"", newline + 1
            if not line:
                if self._has_fields:
                    ends.append((start, self._name or "message"))
                self._name, self._has_fields = None, False
            elif not line.startswith(b":"):
                self._has_fields = True
                name, _, value = line.partition(b":")
                if name == b"event":
                    self._name = value.removeprefix(b" ").decode("utf-8", errors="replace")
        self._partial += chunk[start:]
        return ends


def _message(body: bytes) -> str:
    try:
        return msgspec.json.decode(body, type=_ChatRequest).message
    except msgspec.DecodeError:
        return ""


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse(status, {"detail": detail})
