"""The write side: units of work on SQLAlchemy ``AsyncSession``s, with stores bound to one customer.

Every statement of every store carries the customer's id (directly, or through the instance it belongs to), so no
store can read or change a row of another customer: the database may be the platform's, shared with real ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Protocol, cast
from uuid import UUID

from sqlalchemy import RowMapping, Table, delete, exists, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from smoke.adapters.postgres.errors import is_unique_violation, storage_errors_translated, translate_storage_errors
from smoke.adapters.postgres.tables import AgentCredentialRow, InstanceRow, InstanceStatusHistoryRow, LedgerRow
from smoke.domain.errors import IdempotencyKeyReused, InstanceNotFound
from smoke.domain.models import CustomerScope, Instance, InstanceStatus, LedgerEntry
from smoke.domain.ports import AgentCredentialStore, Database, InstanceRepository, ProvisionLedger, UnitOfWork

__all__ = ("SqlAlchemyDatabase", "SqlAlchemyUnitOfWork", "instance_from_row")

_LEDGER = cast(Table, LedgerRow.__table__)
_INSTANCES = cast(Table, InstanceRow.__table__)
_HISTORY = cast(Table, InstanceStatusHistoryRow.__table__)
_CREDENTIALS = cast(Table, AgentCredentialRow.__table__)


class SqlAlchemyDatabase(Database):
    """Units of work of the customer of ``scope``, each on a session of its own."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], scope: CustomerScope) -> None:
        self._sessions = sessions
        self._customer_id = scope.customer_id

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        async with storage_errors_translated(), self._sessions() as session:  # closing rolls back
            yield SqlAlchemyUnitOfWork(session, self._customer_id)


class SqlAlchemyUnitOfWork(UnitOfWork):
    def __init__(self, session: AsyncSession, customer_id: UUID) -> None:
        self._session = session
        self.ledger = SqlAlchemyProvisionLedger(session, customer_id)
        self.instances = SqlAlchemyInstanceRepository(session, customer_id)
        self.credentials = SqlAlchemyAgentCredentialStore(session, customer_id)

    @translate_storage_errors
    async def commit(self) -> None:
        await self._session.commit()


class SqlAlchemyProvisionLedger(ProvisionLedger):
    def __init__(self, session: AsyncSession, customer_id: UUID) -> None:
        self._session = session
        self._customer_id = customer_id

    @translate_storage_errors
    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        return await self._entry(_LEDGER.c.idempotency_key == idempotency_key)

    @translate_storage_errors
    async def get_by_instance(self, instance_id: UUID) -> LedgerEntry | None:
        return await self._entry(_LEDGER.c.instance_id == instance_id)

    @translate_storage_errors
    async def lock(self) -> None:
        lock_key = f"smoke:provision-ledger:{self._customer_id}"
        await self._session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": lock_key})

    @translate_storage_errors
    async def count_live(self) -> int:
        # released_at is set by SqlAlchemyInstanceRepository when the instance is soft-deleted or fails.
        query = select(func.count()).where(_LEDGER.c.customer_id == self._customer_id, _LEDGER.c.released_at.is_(None))
        return int((await self._session.execute(query)).scalar_one())

    @translate_storage_errors
    async def add(self, entry: LedgerEntry) -> None:
        try:
            async with self._session.begin_nested():
                values = _ledger_values(entry) | {"customer_id": self._customer_id}
                await self._session.execute(insert(_LEDGER).values(**values))
        except IntegrityError as error:
            if is_unique_violation(error):
                raise IdempotencyKeyReused from error
            raise

    @translate_storage_errors
    async def without_instance(self, created_before: datetime) -> list[LedgerEntry]:
        query = (
            select(_LEDGER)
            .outerjoin(_INSTANCES, _INSTANCES.c.id == _LEDGER.c.instance_id)
            .where(
                _LEDGER.c.customer_id == self._customer_id,
                _INSTANCES.c.id.is_(None),
                _LEDGER.c.created_at < created_before,
            )
        )
        return [_ledger_entry(row) for row in (await self._session.execute(query)).mappings()]

    async def _entry(self, *where: Any) -> LedgerEntry | None:
        query = select(_LEDGER).where(_LEDGER.c.customer_id == self._customer_id, *where)
        row = (await self._session.execute(query)).mappings().first()
        return _ledger_entry(row) if row else None


class SqlAlchemyInstanceRepository(InstanceRepository):
    def __init__(self, session: AsyncSession, customer_id: UUID) -> None:
        self._session = session
        self._customer_id = customer_id
        self._ours = _INSTANCES.c.customer_id == customer_id

    @translate_storage_errors
    async def claim(self, instance: Instance) -> Instance:
        if instance.customer_id != self._customer_id:
            raise InstanceNotFound
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
        if stored is None:  # the id is another customer's
            raise InstanceNotFound
        return stored

    @translate_storage_errors
    async def get(self, instance_id: UUID, *, lock: bool = False) -> Instance | None:
        query = select(_INSTANCES).where(_INSTANCES.c.id == instance_id, self._ours)
        row = (await self._session.execute(query.with_for_update() if lock else query)).mappings().first()
        return instance_from_row(row) if row else None

    @translate_storage_errors
    async def save(self, instance: Instance) -> None:
        stored_status = (
            await self._session.execute(
                select(_INSTANCES.c.status).where(_INSTANCES.c.id == instance.id, self._ours).with_for_update()
            )
        ).scalar_one_or_none()
        if stored_status is None:
            raise InstanceNotFound
        values = _instance_values(instance)
        await self._session.execute(update(_INSTANCES).where(_INSTANCES.c.id == instance.id).values(**values))
        if stored_status != instance.status:
            await self._record(instance)
            await self._release_slot_if_done(instance)

    @translate_storage_errors
    async def note(self, instance: Instance, reason: str) -> None:
        last = (
            select(_HISTORY.c.status, _HISTORY.c.reason)
            .where(_HISTORY.c.instance_id == instance.id)
            .order_by(_HISTORY.c.id.desc())
            .limit(1)
            .subquery()
        )
        said_already = exists().where(last.c.status == instance.status, last.c.reason == reason)
        ours = exists().where(_INSTANCES.c.id == instance.id, self._ours)
        await self._session.execute(
            insert(_HISTORY).from_select(
                ["instance_id", "status", "reason"],
                select(literal(instance.id), literal(str(instance.status)), literal(reason)).where(ours, ~said_already),
            )
        )

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
    async def expecting_server(self) -> list[Instance]:
        return await self._instances(
            _INSTANCES.c.status.in_([InstanceStatus.PROVISIONING, InstanceStatus.RUNNING]),
            _INSTANCES.c.deleted_at.is_(None),
        )

    @translate_storage_errors
    async def live_ids(self) -> set[UUID]:
        query = select(_INSTANCES.c.id).where(
            self._ours, _INSTANCES.c.deleted_at.is_(None), _INSTANCES.c.status != InstanceStatus.FAILED
        )
        return set((await self._session.execute(query)).scalars())

    async def _instances(self, *where: Any) -> list[Instance]:
        query = select(_INSTANCES).where(self._ours, *where).order_by(_INSTANCES.c.created_at)
        return [instance_from_row(row) for row in (await self._session.execute(query)).mappings()]

    async def _release_slot_if_done(self, instance: Instance) -> None:
        """A soft-deleted or failed instance stops holding a slot of the live-instance cap."""
        if instance.is_deleted or instance.status is InstanceStatus.FAILED:
            await self._session.execute(
                update(_LEDGER)
                .where(
                    _LEDGER.c.customer_id == self._customer_id,
                    _LEDGER.c.instance_id == instance.id,
                    _LEDGER.c.released_at.is_(None),
                )
                .values(released_at=func.now())
            )

    async def _record(self, instance: Instance) -> None:
        await self._session.execute(
            insert(_HISTORY).values(instance_id=instance.id, status=instance.status, reason=instance.failure_reason)
        )


class SqlAlchemyAgentCredentialStore(AgentCredentialStore):
    def __init__(self, session: AsyncSession, customer_id: UUID) -> None:
        self._session = session
        self._ours = select(_INSTANCES.c.id).where(_INSTANCES.c.customer_id == customer_id)

    @translate_storage_errors
    async def add(self, instance_id: UUID, digest: str) -> None:
        ours = self._ours.where(_INSTANCES.c.id == instance_id)
        statement = pg_insert(_CREDENTIALS).from_select(
            ["instance_id", "token_digest"], select(ours.subquery().c.id, literal(digest))
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["instance_id"], set_={"token_digest": digest, "created_at": func.now()}
            )
        )

    @translate_storage_errors
    async def revoke(self, instance_id: UUID) -> None:
        await self._session.execute(
            delete(_CREDENTIALS).where(
                _CREDENTIALS.c.instance_id == instance_id, _CREDENTIALS.c.instance_id.in_(self._ours)
            )
        )

    @translate_storage_errors
    async def instance_for(self, digest: str) -> UUID | None:
        query = select(_CREDENTIALS.c.instance_id).where(
            _CREDENTIALS.c.token_digest == digest, _CREDENTIALS.c.instance_id.in_(self._ours)
        )
        found: UUID | None = (await self._session.execute(query)).scalar_one_or_none()
        return found


def _ledger_values(entry: LedgerEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in LedgerEntry.__slots__}


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
