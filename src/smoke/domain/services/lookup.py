"""The hot reads: where a request is and how an instance looks, from committed state, with no session."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from smoke.domain.errors import InstanceNotFound
from smoke.domain.models import CustomerScope, InstanceView, PollResult
from smoke.domain.ports import InstanceReader

__all__ = ("InstanceLookup",)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceLookup:
    """Stateless, so one serves every request (Smoke Poll and Smoke Status are where the read load is)."""

    scope: CustomerScope
    reader: InstanceReader

    async def poll(self, idempotency_key: str) -> PollResult:
        """Where the request of that key is; ``found`` is False until the worker has inserted its instance."""
        return await self.reader.poll(self.scope.customer_id, idempotency_key)

    async def status(self, instance_id: UUID) -> InstanceView:
        """The instance, soft-deleted or not. Raises ``InstanceNotFound``, also for another customer's instance."""
        view = await self.reader.view(self.scope.customer_id, instance_id)
        if view is None:
            raise InstanceNotFound
        return view
