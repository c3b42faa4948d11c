"""The write-side stores on one SQLAlchemy ``AsyncSession``: everything they write commits together."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, cast
from uuid import UUID

from sqlalchemy import RowMapping, Table, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from smoke.adapters.postgres.errors import is_unique_violation, translate_storage_errors
from smoke.adapters.postgres.tables import AgentCredentialRow, InstanceRow, InstanceStatusHistoryRow, LedgerRow
from smoke.domain.errors import IdempotencyKeyReused
from smoke.domain.models import Instance, InstanceStatus, LedgerEntry, StatusChange
from smoke.domain.ports import AgentCredentialStore, InstanceRepository, ProvisionLedger, UnitOfWork

__all__ = (
    "SqlAlchemyAgentCredentialStore",
    "SqlAlchemyInstanceRepository",
    "SqlAlchemyProvisionLedger",
    "SqlAlchemyUnitOfWork",
)

_LEDGER = cast(Table, LedgerRow.__table__)
_INSTANCES = cast(Table, InstanceRow.__table__)
_HISTORY = cast(Table, InstanceStatusHistoryRow.__table__)
_CREDENTIALS = cast(Table, AgentCredentialRow.__table__)


class SqlAlchemyUnitOfWork(UnitOfWork):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @translate_storage_errors
    async def commit(self) -> None:
        await self._session.commit()

    @translate_storage_errors
    async def rollback(self) -> None:
        await self._session.rollback()


class SqlAlchemyProvisionLedger(ProvisionLedger):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @translate_storage_errors
    async def get(self, customer_id: UUID, idempotency_key: str) -> LedgerEntry | None:
        query = select(_LEDGER).where(
            _LEDGER.c.customer_id == customer_id, _LEDGER.c.idempotency_key == idempotency_key
        )
        row = (await self._session.execute(query)).mappings().first()
        return _ledger_entry(row) if row else None

    @translate_storage_errors
    async def get_by_instance(self, customer_id: UUID, instance_id: UUID) -> LedgerEntry | None:
        query = select(_LEDGER).where(_LEDGER.c.customer_id == customer_id, _LEDGER.c.instance_id == instance_id)
        row = (await self._session.execute(query)).mappings().first()
        return _ledger_entry(row) if row else None

    @translate_storage_errors
    async def lock(self, customer_id: UUID) -> None:
        lock_key = f"smoke:provision-ledger:{customer_id}"
        await self._session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": lock_key})

    @translate_storage_errors
    async def count_live(self, customer_id: UUID) -> int:
        # released_at is set by SqlAlchemyInstanceRepository when the instance is soft-deleted or fails.
        query = select(func.count()).where(_LEDGER.c.customer_id == customer_id, _LEDGER.c.released_at.is_(None))
        return int((await self._session.execute(query)).scalar_one())

    @translate_storage_errors
    async def add(self, entry: LedgerEntry) -> None:
        try:
            async with self._session.begin_nested():
                await self._session.execute(insert(_LEDGER).values(**_ledger_values(entry)))
        except IntegrityError as error:
            if is_unique_violation(error):
                raise IdempotencyKeyReused from error
            raise

    @translate_storage_errors
    async def without_instance(self, created_before: datetime) -> list[LedgerEntry]:
        query = (
            select(_LEDGER)
            .outerjoin(_INSTANCES, _INSTANCES.c.id == _LEDGER.c.instance_id)
            .where(_INSTANCES.c.id.is_(None), _LEDGER.c.created_at < created_before)
        )
        return [_ledger_entry(row) for row in (await self._session.execute(query)).mappings()]


class SqlAlchemyInstanceRepository(InstanceRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @translate_storage_errors
    async def claim(self, instance: Instance) -> Instance:
        inserted = await self._session.execute(
            pg_insert(_INSTANCES)
            .values(**_instance_values(instance))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(_INSTANCES.c.id)
        )
        if inserted.first() is not None:
            await self._record(instance)
            await self._release_slot_if_done(instance)
        stored = await self.get(instance.id, lock=True)
        assert stored is not None, "a claimed instance row exists"
        return stored

    @translate_storage_errors
    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        query = select(_INSTANCES).where(_INSTANCES.c.id == instance_id)
        row = (await self._session.execute(query.with_for_update() if lock else query)).mappings().first()
        return instance_from_row(row) if row else None

    @translate_storage_errors
    async def save(self, instance: Instance) -> None:
        stored_status = (
            await self._session.execute(
                select(_INSTANCES.c.status).where(_INSTANCES.c.id == instance.id).with_for_update()
            )
        ).scalar_one()
        values = _instance_values(instance)
        await self._session.execute(update(_INSTANCES).where(_INSTANCES.c.id == instance.id).values(**values))
        if stored_status != instance.status:
            await self._record(instance)
            await self._release_slot_if_done(instance)

    @translate_storage_errors
    async def history(self, instance_id: UUID) -> list[StatusChange]:
        query = select(_HISTORY).where(_HISTORY.c.instance_id == instance_id).order_by(_HISTORY.c.id)
        return [
            StatusChange(row["instance_id"], InstanceStatus(row["status"]), row["reason"], row["created_at"])
            for row in (await self._session.execute(query)).mappings()
        ]

    @translate_storage_errors
    async def provisioning_since(self, created_before: datetime) -> list[Instance]:
        return await self._instances(
            _INSTANCES.c.status == InstanceStatus.PROVISIONING,
            _INSTANCES.c.deleted_at.is_(None),
            _INSTANCES.c.created_at < created_before,
        )

    @translate_storage_errors
    async def deleting(self) -> list[Instance]:
        return await self._instances(_INSTANCES.c.status == InstanceStatus.DELETING)

    @translate_storage_errors
    async def expired(self, created_before: datetime) -> list[Instance]:
        return await self._instances(_INSTANCES.c.deleted_at.is_(None), _INSTANCES.c.created_at < created_before)

    @translate_storage_errors
    async def live_ids(self) -> set[UUID]:
        query = select(_INSTANCES.c.id).where(
            _INSTANCES.c.deleted_at.is_(None), _INSTANCES.c.status != InstanceStatus.FAILED
        )
        return set((await self._session.execute(query)).scalars())

    async def _instances(self, *where: Any) -> list[Instance]:
        query = select(_INSTANCES).where(*where).order_by(_INSTANCES.c.created_at)
        return [instance_from_row(row) for row in (await self._session.execute(query)).mappings()]

    async def _release_slot_if_done(self, instance: Instance) -> None:
        """A soft-deleted or failed instance stops holding a slot of the live-instance cap."""
        if instance.is_deleted or instance.status is InstanceStatus.FAILED:
            await self._session.execute(
                update(_LEDGER)
                .where(_LEDGER.c.instance_id == instance.id, _LEDGER.c.released_at.is_(None))
                .values(released_at=func.now())
            )

    async def _record(self, instance: Instance) -> None:
        await self._session.execute(
            insert(_HISTORY).values(instance_id=instance.id, status=instance.status, reason=instance.failure_reason)
        )


class SqlAlchemyAgentCredentialStore(AgentCredentialStore):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @translate_storage_errors
    async def add(self, instance_id: UUID, digest: str) -> None:
        statement = pg_insert(_CREDENTIALS).values(instance_id=instance_id, token_digest=digest)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["instance_id"], set_={"token_digest": digest, "created_at": func.now()}
            )
        )

    @translate_storage_errors
    async def revoke(self, instance_id: UUID) -> None:
        await self._session.execute(delete(_CREDENTIALS).where(_CREDENTIALS.c.instance_id == instance_id))

    @translate_storage_errors
    async def instance_for(self, digest: str) -> UUID | None:
        query = select(_CREDENTIALS.c.instance_id).where(_CREDENTIALS.c.token_digest == digest)
        found: UUID | None = (await self._session.execute(query)).scalar_one_or_none()
        return found


def _ledger_values(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "customer_id": entry.customer_id,
        "idempotency_key": entry.idempotency_key,
        "fingerprint": entry.fingerprint,
        "instance_id": entry.instance_id,
        "task_id": entry.task_id,
        "manifest_id": entry.manifest_id,
        "region_id": entry.region_id,
        "tier_id": entry.tier_id,
        "created_at": entry.created_at,
    }


def _ledger_entry(row: RowMapping) -> LedgerEntry:
    return LedgerEntry(**{name: row[name] for name in LedgerEntry.__slots__})


def _instance_values(instance: Instance) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in Instance.__slots__}


class Row(Protocol):
    """A database row by column name: a SQLAlchemy ``RowMapping`` or an asyncpg ``Record``."""

    def __getitem__(self, column: str) -> Any: ...


def instance_from_row(row: Row) -> Instance:
    """An ``instances`` row (SQLAlchemy mapping or asyncpg record) as the domain's ``Instance``."""
    values = {name: row[name] for name in Instance.__slots__}
    return Instance(**values | {"status": InstanceStatus(row["status"])})
