"""provision_ledger.released_at: count the live-instance cap from a bounded set

The cap counted every ledger row of the customer joined to its instance, under the advisory lock of each
provision: 0.5 ms at 10^3 rows, 53 ms at 10^5 (benchmarks/probe_count_live.py), and the ledger is never pruned.
A request now records when it stops holding a slot, and a partial index covers those that still do.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provision_ledger", sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE provision_ledger l SET released_at = coalesce(i.deleted_at, now()) FROM instances i "
        "WHERE i.id = l.instance_id AND (i.deleted_at IS NOT NULL OR i.status = 'failed')"
    )
    op.create_index(
        "ix_provision_ledger_holding",
        "provision_ledger",
        ["customer_id"],
        unique=False,
        postgresql_where="released_at IS NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_provision_ledger_holding", table_name="provision_ledger", postgresql_where="released_at IS NULL")
    op.drop_column("provision_ledger", "released_at")
