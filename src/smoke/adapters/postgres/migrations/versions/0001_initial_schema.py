"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "manifests",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("image", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manifests")),
    )
    op.create_table(
        "regions",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("location", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
    )
    op.create_table(
        "tiers",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("server_type", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
    )
    op.create_table(
        "provision_ledger",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.String(length=100), nullable=False),
        sa.Column("manifest_id", sa.String(length=100), nullable=False),
        sa.Column("region_id", sa.String(length=80), nullable=False),
        sa.Column("tier_id", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_provision_ledger_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name=op.f("fk_provision_ledger_manifest_id_manifests")
        ),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("fk_provision_ledger_region_id_regions")),
        sa.ForeignKeyConstraint(["tier_id"], ["tiers.id"], name=op.f("fk_provision_ledger_tier_id_tiers")),
        sa.PrimaryKeyConstraint("customer_id", "idempotency_key", name=op.f("pk_provision_ledger")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_provision_ledger_instance_id")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_tenants_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_index(op.f("ix_tenants_customer_id"), "tenants", ["customer_id"], unique=False)
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_subscriptions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_tenant_id"), "subscriptions", ["tenant_id"], unique=False)
    op.create_table(
        "instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("hostname", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("manifest_id", sa.String(length=100), nullable=False),
        sa.Column("region_id", sa.String(length=80), nullable=False),
        sa.Column("tier_id", sa.String(length=80), nullable=False),
        sa.Column("provider_server_id", sa.BigInteger(), nullable=True),
        sa.Column("ipv4", sa.String(length=45), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_instances_customer_id_customers")),
        sa.ForeignKeyConstraint(
            ["id"], ["provision_ledger.instance_id"], name=op.f("fk_instances_id_provision_ledger")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_instances_subscription_id_subscriptions")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_instances_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("hostname", name=op.f("uq_instances_hostname")),
    )
    op.create_index(
        "ix_instances_live_created_at", "instances", ["created_at"], unique=False, postgresql_where="deleted_at IS NULL"
    )
    op.create_index(
        "ix_instances_status",
        "instances",
        ["status"],
        unique=False,
        postgresql_where="status IN ('provisioning', 'deleting')",
    )
    op.create_table(
        "agent_credentials",
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_agent_credentials_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_agent_credentials")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_agent_credentials_token_digest")),
    )
    op.create_table(
        "instance_status_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_instance_status_history_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_status_history")),
    )
    op.create_index(
        op.f("ix_instance_status_history_instance_id"), "instance_status_history", ["instance_id"], unique=False
    )
    op.create_table(
        "llm_usage_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_llm_usage_events_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_usage_events")),
        sa.UniqueConstraint("instance_id", "request_id", name=op.f("uq_llm_usage_events_instance_id")),
    )
    op.create_index(
        "ix_llm_usage_events_window",
        "llm_usage_events",
        ["instance_id", "created_at"],
        unique=False,
        postgresql_include=["provider"],
    )


def downgrade() -> None:

    op.drop_index("ix_llm_usage_events_window", table_name="llm_usage_events", postgresql_include=["provider"])
    op.drop_table("llm_usage_events")
    op.drop_index(op.f("ix_instance_status_history_instance_id"), table_name="instance_status_history")
    op.drop_table("instance_status_history")
    op.drop_table("agent_credentials")
    op.drop_index(
        "ix_instances_status", table_name="instances", postgresql_where="status IN ('provisioning', 'deleting')"
    )
    op.drop_index("ix_instances_live_created_at", table_name="instances", postgresql_where="deleted_at IS NULL")
    op.drop_table("instances")
    op.drop_index(op.f("ix_subscriptions_tenant_id"), table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_index(op.f("ix_tenants_customer_id"), table_name="tenants")
    op.drop_table("tenants")
    op.drop_table("provision_ledger")
    op.drop_table("tiers")
    op.drop_table("regions")
    op.drop_table("manifests")
    op.drop_table("customers")
