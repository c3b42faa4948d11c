"""Count an instance's metered LLM calls in a recent window."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import UsageCount
from smoke.domain.ports import InstanceReader, UsageEventStore

__all__ = ("UsageReader",)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReader:
    """Smoke Llm Events for the one smoke customer."""

    reader: InstanceReader
    usage: UsageEventStore

    async def count(self, instance_id: UUID, window_seconds: int) -> UsageCount:
        """Events of the instance in the last ``window_seconds``, read from the authoritative table.

        Raises:
            InstanceNotFound: this customer was never allocated that instance id.
        """
        if not await self.reader.owns(instance_id):
            raise InstanceNotFound
        return await self.usage.count_window(instance_id, window_seconds)
