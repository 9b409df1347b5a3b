"""a stored quote is ordered once: its orders are found by quote (issue 8)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_quote_id", ["quote_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_quote_id")
