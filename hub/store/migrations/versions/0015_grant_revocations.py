"""a maintainer revokes a grant with a signed revocation, kept on record beside the grant (issue 8)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_by", sa.String(64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("revocation", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("revocation_signature", sa.String(128), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("revocation_signature")
        batch_op.drop_column("revocation")
        batch_op.drop_column("revoked_by")
