"""a hub admin drains a node: no new jobs are routed to it, its prints run on (issue 7)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drained", sa.String(200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("drained_at", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("drained_at")
        batch_op.drop_column("drained")
