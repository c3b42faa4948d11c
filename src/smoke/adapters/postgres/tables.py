"""The schema, as advanced-alchemy models. Migrations in ``migrations/`` create exactly this."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

__all__ = (
    "AgentCredentialRow",
    "CloudRequestBudgetRow",
    "CustomerRow",
    "InstanceRow",
    "InstanceStatusHistoryRow",
    "LedgerRow",
    "LlmUsageEventRow",
    "ManifestRow",
    "RegionRow",
    "SubscriptionRow",
    "TenantRow",
    "TierRow",
    "metadata",
)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTimeUTC(timezone=True), server_default=func.now(), nullable=False)


class CustomerRow(DefaultBase):
    __tablename__ = "customers"
    id: Mapped[UUID] = mapped_column(GUID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class TenantRow(DefaultBase):
    __tablename__ = "tenants"
    id: Mapped[UUID] = mapped_column(GUID, primary_key=True)
    customer_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class SubscriptionRow(DefaultBase):
    __tablename__ = "subscriptions"
    id: Mapped[UUID] = mapped_column(GUID, primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("tenants.id"), index=True)
    plan: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created_at()


def _retired_at() -> Mapped[datetime | None]:
    """When the entry left the configured catalog: refused for new requests, kept for the instances using it."""
    return mapped_column(DateTimeUTC(timezone=True))


class RegionRow(DefaultBase):
    __tablename__ = "regions"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    location: Mapped[str] = mapped_column(String(80))
    retired_at: Mapped[datetime | None] = _retired_at()


class TierRow(DefaultBase):
    __tablename__ = "tiers"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    server_type: Mapped[str] = mapped_column(String(80))
    retired_at: Mapped[datetime | None] = _retired_at()


class ManifestRow(DefaultBase):
    __tablename__ = "manifests"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    image: Mapped[str] = mapped_column(String(100))
    agent: Mapped[str] = mapped_column(String(20), server_default="reference")
    agent_port: Mapped[int] = mapped_column(Integer, server_default="8080")
    user_data: Mapped[str | None] = mapped_column(Text)
    llm: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """``{"provider", "base_url", "model", "api_key_setting"}``: the key's value stays in the environment."""
    retired_at: Mapped[datetime | None] = _retired_at()


class LedgerRow(DefaultBase):
    """One accepted provision request per (customer, idempotency key): the idempotency record."""

    __tablename__ = "provision_ledger"
    customer_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("customers.id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[UUID] = mapped_column(GUID, unique=True)
    task_id: Mapped[str] = mapped_column(String(100))
    manifest_id: Mapped[str] = mapped_column(String(100), ForeignKey("manifests.id"))
    region_id: Mapped[str] = mapped_column(String(80), ForeignKey("regions.id"))
    tier_id: Mapped[str] = mapped_column(String(80), ForeignKey("tiers.id"))
    created_at: Mapped[datetime] = _created_at()
    released_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    """When the request stopped holding a slot of the live-instance cap (its instance deleted or failed)."""

    __table_args__ = (
        Index("ix_provision_ledger_holding", "customer_id", postgresql_where="released_at IS NULL"),
        Index("ix_provision_ledger_newest", "customer_id", "created_at", "instance_id"),
    )


class InstanceRow(DefaultBase):
    __tablename__ = "instances"
    id: Mapped[UUID] = mapped_column(GUID, ForeignKey("provision_ledger.instance_id"), primary_key=True)
    customer_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("customers.id"))
    tenant_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("tenants.id"))
    subscription_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("subscriptions.id"))
    hostname: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    manifest_id: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[str] = mapped_column(String(80))
    tier_id: Mapped[str] = mapped_column(String(80))
    provider_server_id: Mapped[int | None] = mapped_column(BigInteger)
    ipv4: Mapped[str | None] = mapped_column(String(45))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))

    __table_args__ = (
        Index("ix_instances_status", "status", postgresql_where="status IN ('provisioning', 'deleting')"),
        Index("ix_instances_live_created_at", "created_at", postgresql_where="deleted_at IS NULL"),
    )


class AgentCredentialRow(DefaultBase):
    """The digest of an instance's agent token; deleting the row revokes the agent."""

    __tablename__ = "agent_credentials"
    instance_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("instances.id"), primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created_at()


class InstanceStatusHistoryRow(DefaultBase):
    __tablename__ = "instance_status_history"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    instance_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("instances.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()


class LlmUsageEventRow(DefaultBase):
    """One metered LLM call. ``(instance_id, created_at) INCLUDE (provider)`` keeps the window count an index scan."""

    __tablename__ = "llm_usage_events"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    instance_id: Mapped[UUID] = mapped_column(GUID, ForeignKey("instances.id"))
    request_id: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("instance_id", "request_id"),
        Index("ix_llm_usage_events_window", "instance_id", "created_at", postgresql_include=["provider"]),
    )


metadata = DefaultBase.metadata


class CloudRequestBudgetRow(DefaultBase):
    """The estimate of a cloud project's request bucket (smoke.domain.budget), one row per API URL and token."""

    __tablename__ = "cloud_request_budgets"
    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[float] = mapped_column(Double)
    level_at: Mapped[float] = mapped_column(Double)
    """UNIX seconds of the database's clock, shared by every worker."""
    spent: Mapped[int] = mapped_column(BigInteger)
