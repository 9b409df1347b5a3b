"""orders match printers cheaply: held jobs by printer, slicer profiles in use (issue 8)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# the job states that keep a printer busy (hub.jobs.HELD when this migration was written); the
# matching query spells them out literally, so that both databases can use the partial index
HELD = "state IN ('assigned', 'lost_contact', 'offered', 'outcome_unknown', 'preparing', 'printed', 'printing', 'ready')"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_held_printer", ["node", "printer"], unique=False,
                              sqlite_where=sa.text(HELD), postgresql_where=sa.text(HELD))
    with op.batch_alter_table("printers", schema=None) as batch_op:
        batch_op.create_index("ix_printers_slicer_profile", ["slicer_profile"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("printers", schema=None) as batch_op:
        batch_op.drop_index("ix_printers_slicer_profile")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_held_printer")
