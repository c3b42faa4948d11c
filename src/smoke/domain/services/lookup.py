"""The reads: where a request is, how an instance looks, what happened to it, which instances there are."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import InstancePage, InstanceStatus, InstanceView, PageCursor, PollResult, StatusChange
from smoke.domain.ports import InstanceReader

__all__ = ("InstanceLookup",)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceLookup:
    """Stateless, so one serves every request (Smoke Poll and Smoke Status are where the read load is)."""

    reader: InstanceReader

    async def poll(self, idempotency_key: str) -> PollResult:
        """Where the request of that key is; ``found`` is False until the worker has inserted its instance."""
        return await self.reader.poll(idempotency_key)

    async def status(self, instance_id: UUID) -> InstanceView:
        """The instance, soft-deleted or not, ``queued`` before its row exists.

        Raises ``InstanceNotFound``, also for another customer's instance.
        """
        view = await self.reader.view(instance_id)
        if view is None:
            raise InstanceNotFound
        return view

    async def events(self, instance_id: UUID) -> list[StatusChange]:
        """The instance's history, oldest first, each change with its reason. Raises ``InstanceNotFound``."""
        events = await self.reader.events(instance_id)
        if events is None:
            raise InstanceNotFound
        return events

    async def page(
        self, *, status: InstanceStatus | None = None, limit: int = 50, before: PageCursor | None = None
    ) -> InstancePage:
        """The smoke customer's instances, newest first; pass ``next_before`` back for the next page."""
        return await self.reader.page(status=status, limit=limit, before=before)
