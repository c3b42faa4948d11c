"""Telling the instance's events why something did not happen yet."""

from __future__ import annotations

from uuid import UUID

from smoke.domain.ports import Database

__all__ = ("note",)


async def note(database: Database, instance_id: UUID, reason: str) -> None:
    """Append ``reason`` to the instance's events under its current status (once, however often it recurs)."""
    async with database.begin() as uow:
        if (instance := await uow.instances.get(instance_id, lock=True)) is not None:
            await uow.instances.note(instance, reason)
            await uow.commit()
