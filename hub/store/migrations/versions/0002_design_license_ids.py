"""designs.license_ids: whole-id licence search

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("designs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("license_ids", sa.Text(), server_default="", nullable=False))
    # Backfill: a single-id licence is its own id list; expressions are refreshed on the next push.
    op.execute("UPDATE designs SET license_ids = ' ' || license || ' ' WHERE license NOT LIKE '% %'")


def downgrade() -> None:
    with op.batch_alter_table("designs", schema=None) as batch_op:
        batch_op.drop_column("license_ids")
