"""a job's and an object's part name is text of any length a manifest allows (PostgreSQL refused over 128)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite keeps any length in a VARCHAR(128) (and rebuilding jobs would trip its foreign keys)
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("jobs", "order_objects"):
        op.alter_column(table, "part", type_=sa.Text(), existing_type=sa.String(128), existing_nullable=False,
                        existing_server_default="")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("jobs", "order_objects"):
        op.alter_column(table, "part", type_=sa.String(128), existing_type=sa.Text(), existing_nullable=False,
                        existing_server_default="")
