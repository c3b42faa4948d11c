"""The catalog as configuration, and the list of instances

Manifests carry who runs the agent, its port, extra cloud-config and an LLM backend (catalog.example.toml);
every catalog entry can be retired (refused for new requests, kept for the instances that use it). The
newest-first list of a customer's requests pages on ``(created_at, instance_id)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CATALOG_TABLES = ("manifests", "regions", "tiers")


def upgrade() -> None:
    op.add_column("manifests", sa.Column("agent", sa.String(length=20), server_default="reference", nullable=False))
    op.add_column("manifests", sa.Column("agent_port", sa.Integer(), server_default="8080", nullable=False))
    op.add_column("manifests", sa.Column("user_data", sa.Text(), nullable=True))
    op.add_column("manifests", sa.Column("llm", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    for table in CATALOG_TABLES:
        op.add_column(table, sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_provision_ledger_newest", "provision_ledger", ["customer_id", "created_at", "instance_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_provision_ledger_newest", table_name="provision_ledger")
    for table in CATALOG_TABLES:
        op.drop_column(table, "retired_at")
    for column in ("llm", "user_data", "agent_port", "agent"):
        op.drop_column("manifests", column)
