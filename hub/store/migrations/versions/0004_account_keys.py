"""account keys and hardening (issue 10)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 04:00:00
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
        "account_keys",
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("registered_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        sa.Column("hub_signature", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name=op.f("fk_account_keys_account_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("public_key", name=op.f("pk_account_keys")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_account_keys_fingerprint")),
    )
    with op.batch_alter_table("account_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_keys_account"), ["account"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_keys_account"))
    op.drop_table("account_keys")
