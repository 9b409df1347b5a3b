"""orders, grants, ratings, value ledger (issue 8)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ORDER_COLUMNS = (
    ("quote_id", sa.String(length=32), ""),
    ("rule", sa.String(length=16), ""),
    ("node", sa.String(length=64), ""),
    ("printer", sa.String(length=64), ""),
    ("near", sa.String(length=64), ""),
    ("material_minor", sa.BigInteger(), "0"),
    ("machine_minor", sa.BigInteger(), "0"),
    ("fees_minor", sa.BigInteger(), "0"),
    ("estimated_seconds", sa.Integer(), "0"),
    ("attributions", sa.Text(), "[]"),
    ("failure_reason", sa.Text(), ""),
    ("partial_cost_minor", sa.BigInteger(), "0"),
)


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        for name, type_, default in _ORDER_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, server_default=default, nullable=False))
        batch_op.add_column(sa.Column("settled", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=32), server_default="", nullable=False))
        batch_op.add_column(sa.Column("node", sa.String(length=64), server_default="", nullable=False))
        batch_op.create_unique_constraint("uq_ratings_order_job_rater_role", ["order_id", "job_id", "rater", "role"])
        batch_op.create_index("ix_ratings_node", ["node"], unique=False)
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("explanation", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("equation", sa.Text(), server_default="{}", nullable=False))
        batch_op.create_index("ix_ledger_entries_recipient", ["recipient"], unique=False)
    with op.batch_alter_table("fabrications", schema=None) as batch_op:
        batch_op.create_index("ix_fabrications_design_finished_at", ["design", "finished_at"], unique=False)
    _create_tables()


def _create_tables() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=64), nullable=False),
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("revision_id", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["customer"], ["accounts.name"], name=op.f("fk_quotes_customer_accounts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["design"], ["designs.slug"], name=op.f("fk_quotes_design_designs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
    )
    op.create_table(
        "order_keys",
        sa.Column("customer", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["customer"], ["accounts.name"], name=op.f("fk_order_keys_customer_accounts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_keys_order_id_orders"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer", "key", name=op.f("pk_order_keys")),
    )
    op.create_table(
        "order_objects",
        sa.Column("incarnation_id", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), server_default="", nullable=False),
        sa.Column("part", sa.String(length=128), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_objects_order_id_orders"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("incarnation_id", name=op.f("pk_order_objects")),
    )
    with op.batch_alter_table("order_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_objects_order_id"), ["order_id"], unique=False)
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("revision_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=64), server_default="", nullable=False),
        sa.Column("until", sa.String(length=32), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.Column("granted_at", sa.String(length=32), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("statement_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), server_default="", nullable=False),
        sa.Column("revoked_at", sa.String(length=32), server_default="", nullable=False),
        sa.CheckConstraint("scope IN ('paid','modified','any')", name=op.f("ck_grants_scope")),
        sa.ForeignKeyConstraint(["design"], ["designs.slug"], name=op.f("fk_grants_design_designs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["granted_by"], ["accounts.name"], name=op.f("fk_grants_granted_by_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_design"), ["design"], unique=False)
    op.create_table(
        "value_equations",
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("equation", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["design"], ["designs.slug"], name=op.f("fk_value_equations_design_designs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("design", "version", name=op.f("pk_value_equations")),
    )
    op.create_table(
        "participation",
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("rung", sa.String(length=16), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint("rung IN ('consume','co-design','co-create')", name=op.f("ck_participation_rung")),
        sa.ForeignKeyConstraint(["design"], ["designs.slug"], name=op.f("fk_participation_design_designs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("design", name=op.f("pk_participation")),
    )


def downgrade() -> None:
    for table in ("participation", "value_equations", "grants", "order_objects", "order_keys", "quotes"):
        op.drop_table(table)
    with op.batch_alter_table("fabrications", schema=None) as batch_op:
        batch_op.drop_index("ix_fabrications_design_finished_at")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_recipient")
        batch_op.drop_column("equation")
        batch_op.drop_column("explanation")
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index("ix_ratings_node")
        batch_op.drop_constraint("uq_ratings_order_job_rater_role", type_="unique")
        batch_op.drop_column("node")
        batch_op.drop_column("job_id")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("settled")
        for name, _type, _default in reversed(_ORDER_COLUMNS):
            batch_op.drop_column(name)
