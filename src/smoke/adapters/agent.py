"""The agent VPS over HTTP (the agent protocol of docs/api.md): health checks and streamed chat turns."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from smoke.domain.errors import AgentStreamBroken, AgentUnavailable
from smoke.domain.models import ChatEvent
from smoke.domain.ports import AgentClient, ChatStream
from smoke.sse import SseParser

__all__ = ("HttpAgentClient", "HttpChatStream")


class HttpAgentClient(AgentClient):
    """Speaks to agents with one shared ``httpx.AsyncClient``; its read timeout bounds silence within a stream."""

    def __init__(self, client: httpx.AsyncClient, *, health_timeout: float = 3.0) -> None:
        self._client = client
        self._health_timeout = health_timeout

    async def is_healthy(self, base_url: str) -> bool:
        try:
            response = await self._client.get(f"{base_url}/healthz", timeout=self._health_timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def open_chat(self, base_url: str, token: str, message: str) -> ChatStream:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        request = self._client.build_request("POST", f"{base_url}/v1/chat", json={"message": message}, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise AgentUnavailable(f"agent unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            await response.aclose()
            raise AgentUnavailable(f"agent answered HTTP {response.status_code}")
        return HttpChatStream(response)


class HttpChatStream(ChatStream):
    """An agent's streamed response, parsed incrementally into events."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        parser = SseParser()
        try:
            async for chunk in self._response.aiter_raw():
                for event in parser.feed(chunk):
                    yield ChatEvent(event.event, event.data, event.id)
        except (httpx.HTTPError, ValueError) as error:
            raise AgentStreamBroken(f"agent stream broken: {type(error).__name__}") from None
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()
