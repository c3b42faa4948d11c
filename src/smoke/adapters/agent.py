"""The agent VPS over HTTP: health checks and streamed chat turns (docs/api.md), on one aiohttp session.

aiohttp, not httpx, because a chat turn is on the relay's critical path: against the same agent on loopback, a
kept-alive turn reaches its first event in 0.24 ms with aiohttp and 0.62 ms with httpx 0.28 (0.45 ms on bare
httpcore), costs 174 against 610 µs of the relay's CPU, and a long stream is read at 225k against 100k events/s
(``benchmarks/bench_agent_client.py``, docs/benchmarks.md; encode/httpx#3215 reports the same gap).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import msgspec

from smoke.domain.errors import AgentStreamBroken, AgentUnavailable
from smoke.domain.models import ChatEvent
from smoke.domain.ports import AgentClient, ChatStream
from smoke.sse import SseParser

__all__ = ("HttpAgentClient", "HttpChatStream", "agent_session")

_ERRORS = (aiohttp.ClientError, TimeoutError)


@contextlib.asynccontextmanager
async def agent_session(
    *, connect: float = 5.0, read: float = 60.0, max_connections: int = 200
) -> AsyncIterator[aiohttp.ClientSession]:
    """The session to speak to agents with: ``read`` bounds each silence within a stream, not a whole turn.

    Connections are kept alive between turns (a turn read to its end gives its connection back); no cookies are
    kept, nothing is decompressed (an SSE stream is relayed as it comes), and no proxy is taken from the
    environment.
    """
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=60.0)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
    ) as session:
        yield session


class HttpAgentClient(AgentClient):
    """Speaks to agents with one shared ``aiohttp.ClientSession`` (``agent_session``)."""

    def __init__(self, session: aiohttp.ClientSession, *, health_timeout: float = 3.0) -> None:
        self._session = session
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout)

    async def is_healthy(self, base_url: str) -> bool:
        try:
            async with self._session.get(
                f"{base_url}/healthz", timeout=self._health_timeout, allow_redirects=False
            ) as response:
                await response.read()
                return response.status == 200
        except _ERRORS:
            return False

    async def open_chat(self, base_url: str, token: str, message: str) -> ChatStream:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
        }
        body = msgspec.json.encode({"message": message})
        try:
            response = await self._session.post(
                f"{base_url}/v1/chat", data=body, headers=headers, allow_redirects=False
            )
        except _ERRORS as error:
            raise AgentUnavailable(f"agent unreachable: {type(error).__name__}") from None
        if response.status >= 300:
            response.close()
            raise AgentUnavailable(f"agent answered HTTP {response.status}")
        return HttpChatStream(response)


class HttpChatStream(ChatStream):
    """An agent's streamed response, parsed incrementally into events as its bytes arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        parser = SseParser()
        try:
            async for chunk in self._response.content.iter_any():
                for event in parser.feed(chunk):
                    yield ChatEvent(event.event, event.data, event.id)
        except (*_ERRORS, ValueError) as error:
            raise AgentStreamBroken(f"agent stream broken: {type(error).__name__}") from None
        finally:
            self._response.close()

    async def aclose(self) -> None:
        """Closes the connection unless the response was read to its end, in which case it is back in the pool."""
        self._response.close()
