"""the order-time licence gate and the per-design grant cap read only a design's live grants (issue 8)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LIVE = "revoked_at = ''"


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index("ix_grants_live", ["design", "until"], unique=False,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index("ix_grants_live")
