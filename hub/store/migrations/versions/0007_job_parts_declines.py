"""jobs per manifest part, declines forgotten after a while, lookups by node place and history (issue 8)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tried_at", sa.String(length=32), server_default="", nullable=False))
        batch_op.add_column(sa.Column("part", sa.String(length=128), server_default="", nullable=False))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index("ix_nodes_latitude_longitude", ["latitude", "longitude"], unique=False)
    with op.batch_alter_table("fabrications", schema=None) as batch_op:
        batch_op.create_index("ix_fabrications_node_model_material",
                              ["node", "printer_model", "material", "finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fabrications", schema=None) as batch_op:
        batch_op.drop_index("ix_fabrications_node_model_material")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index("ix_nodes_latitude_longitude")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("part")
        batch_op.drop_column("tried_at")
