"""Twin (b) of Smoke Status and Smoke Poll: FastAPI + pydantic + SQLAlchemy ORM, the stack of the system smoke replaces.

The same bearer check, the same rows (``instances`` by id and customer; the ledger entry of a key joined to its
instance), the same JSON and statuses as Smoke Status and Smoke Poll,
written the way that stack writes it: an ``HTTPBearer`` dependency, an ``AsyncSession`` per request from a
dependency, an ORM ``select`` with ``load_only`` and a pydantic ``response_model``
(the ORM-per-request configuration the read path is measured against). Reads ``DATABASE_URL`` and ``OPS_BEARER_TOKEN``.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi import Path as FastApiPath
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import String, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, load_only, mapped_column

from smoke.settings import DEFAULT_CUSTOMER_ID

TOKEN = os.environ.get("OPS_BEARER_TOKEN", "").encode()
engine = create_async_engine(
    "postgresql+asyncpg://" + os.environ.get("DATABASE_URL", "postgresql://x@127.0.0.1/x").split("://", 1)[1],
    pool_size=10,
    max_overflow=0,
)
sessions = async_sessionmaker(engine, expire_on_commit=False)
bearer = HTTPBearer(auto_error=False)


class Base(DeclarativeBase):
    pass


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    hostname: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))


class LedgerEntry(Base):
    __tablename__ = "provision_ledger"
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class PollOut(BaseModel):
    found: bool
    instance_id: uuid.UUID | None
    status: str | None


class InstanceOut(BaseModel):
    hostname: str
    id: uuid.UUID
    status: str


async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    presented = credentials.credentials.strip().encode() if credentials else b""
    if not (presented and hmac.compare_digest(presented, TOKEN)):
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


async def get_session() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(dependencies=[Depends(require_token)], lifespan=lifespan)


@app.get("/internal/v1/smoke/instances/by-key/{idempotency_key}", response_model=PollOut)
async def smoke_poll(
    idempotency_key: Annotated[str, FastApiPath(min_length=1, max_length=255, pattern=r"^[^/\x00]*$")],
    session: Annotated[AsyncSession, Depends(get_session)],
) -> PollOut:
    query = (
        select(Instance)
        .options(load_only(Instance.id, Instance.status))
        .join(LedgerEntry, LedgerEntry.instance_id == Instance.id)
        .where(
            LedgerEntry.customer_id == DEFAULT_CUSTOMER_ID,
            LedgerEntry.idempotency_key == idempotency_key,
            Instance.customer_id == DEFAULT_CUSTOMER_ID,
        )
    )
    instance = (await session.execute(query)).scalar_one_or_none()
    if instance is None:
        return PollOut(found=False, instance_id=None, status=None)
    return PollOut(found=True, instance_id=instance.id, status=instance.status)


@app.get("/internal/v1/smoke/instances/{instance_id}", response_model=InstanceOut)
async def smoke_status(instance_id: uuid.UUID, session: Annotated[AsyncSession, Depends(get_session)]) -> Instance:
    query = (
        select(Instance)
        .options(load_only(Instance.id, Instance.hostname, Instance.status))
        .where(Instance.id == instance_id, Instance.customer_id == DEFAULT_CUSTOMER_ID)
    )
    instance = (await session.execute(query)).scalar_one_or_none()
    if instance is None:
        raise HTTPException(404, "Instance not found")
    return instance
