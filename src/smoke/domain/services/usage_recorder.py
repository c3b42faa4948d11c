"""Usage reports from agents: who is reporting, and record each LLM call once."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import UnknownAgentToken
from smoke.domain.models import UsageEvent
from smoke.domain.ports import Database, TokenIssuer, UsageEventStore

__all__ = ("UsageRecorder",)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecorder:
    """The usage ingest: agents report their instance's LLM calls."""

    database: Database
    usage: UsageEventStore
    tokens: TokenIssuer

    async def authenticate(self, agent_token: str) -> UUID:
        """The instance whose agent presents ``agent_token``. Raises ``UnknownAgentToken`` (unknown or revoked)."""
        if not agent_token:
            raise UnknownAgentToken
        async with self.database.begin() as uow:
            instance_id = await uow.credentials.instance_for(self.tokens.digest(agent_token))
        if instance_id is None:
            raise UnknownAgentToken
        return instance_id

    async def record(self, event: UsageEvent) -> bool:
        """Store the call; False when its ``request_id`` was recorded for the instance before (counted once)."""
        return await self.usage.record(event)
