"""One chat turn with an instance's agent, relayed event by event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from smoke.domain.agent_config import AgentUrls
from smoke.domain.errors import AgentStreamBroken, InstanceNotFound, InvalidState
from smoke.domain.models import ChatEvent, InstanceStatus
from smoke.domain.ports import AgentClient, ChatStream, InstanceReader, TokenIssuer

__all__ = ("ChatRelay", "ChatTurn")

DONE = "done"


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """An accepted turn: iterate its events; it is complete only when the agent's ``done`` event arrived."""

    stream: ChatStream

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The agent's events, unchanged. Raises ``AgentStreamBroken`` if the stream ends without ``done``.

        After ``done`` the rest of the stream is read (and dropped) to its end, so that the connection to the agent
        can be used again.
        """
        stream = aiter(self.stream)
        async for event in stream:
            yield event
            if event.event == DONE:
                async for _after_done in stream:
                    pass
                return
        raise AgentStreamBroken("the agent ended the turn without its done event")

    async def close(self) -> None:
        """End the turn: close the request to the agent at once (idempotent)."""
        await self.stream.aclose()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRelay:
    """Single consumer by design: no stream lock, no rate limiter, no renewal loop (CI is the only caller).

    Holds no database session: it reads the instance once and then only talks to the agent.
    """

    reader: InstanceReader
    agents: AgentClient
    tokens: TokenIssuer
    agent_urls: AgentUrls

    async def open(self, instance_id: UUID, message: str) -> ChatTurn:
        """Start a turn with the instance's agent; the agent's URL comes from the stored server data only.

        Raises:
            InstanceNotFound: this customer has no such instance.
            InvalidState: the instance is not ``running``.
            AgentUnavailable: the agent cannot be reached or refused the turn.
        """
        instance = await self.reader.instance(instance_id)
        if instance is None:
            if await self.reader.owns(instance_id):
                raise InvalidState(f"Instance is {InstanceStatus.QUEUED}, not running")
            raise InstanceNotFound
        if instance.is_deleted or instance.status is not InstanceStatus.RUNNING:
            raise InvalidState(f"Instance is {instance.status}, not running")
        base_url = self.agent_urls.base_url(instance)
        token = self.tokens.agent_token(instance.id).token
        return ChatTurn(await self.agents.open_chat(base_url, token, message))
