"""The cloud project's request budget, shared by every worker of a deployment

One row per API URL and token: the estimate of the project's bucket of requests, spent before each request and
corrected by each answer's ``RateLimit-*`` headers (smoke.domain.budget). It holds no customer data.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloud_request_budgets",
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("level_at", sa.Double(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_cloud_request_budgets")),
    )


def downgrade() -> None:
    op.drop_table("cloud_request_budgets")
