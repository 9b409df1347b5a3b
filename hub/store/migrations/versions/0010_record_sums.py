"""the community record reads running sums instead of aggregating every fabrication and rating (issue 8)

Three tables the writers keep in the transaction of each fabrication and rating
(hub/store/record_sums.py), backfilled here from the rows already stored, with
the queries the record ran before (the same sums, grouped once for all designs);
and an index that covers what the record reads of a design's revisions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_MEASURED = "outcome = 'success' AND estimated_seconds > 0 AND actual_seconds > 0"
_PRINT_STATS = f"""
INSERT INTO record_print_stats (design, printer_model, material, prints, successes, measured, time_error_sum,
                                filament_error_sum)
SELECT design, printer_model, material, count(*),
       sum(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END),
       sum(CASE WHEN {_MEASURED} THEN 1 ELSE 0 END),
       sum(CASE WHEN {_MEASURED} THEN CAST(actual_seconds - estimated_seconds AS FLOAT) / estimated_seconds
           ELSE 0.0 END),
       sum(CASE WHEN {_MEASURED} AND estimated_filament_g > 0
           THEN (actual_filament_g - estimated_filament_g) / estimated_filament_g ELSE 0.0 END)
FROM fabrications GROUP BY design, printer_model, material
"""
_PRINT_SETTINGS = """
INSERT INTO record_print_settings (design, printer_model, material, settings, successes)
SELECT design, printer_model, material, settings, count(*) FROM fabrications WHERE outcome = 'success'
GROUP BY design, printer_model, material, settings
"""
_VOTING = "ratings.role IN ('customer', 'maker')"
_STARS = f"""
INSERT INTO record_votes (design, criterion, total, count)
SELECT design, '', sum(stars), count(*) FROM ratings WHERE {_VOTING} GROUP BY design
"""
_CRITERIA = {
    "sqlite": "json_each(ratings.criteria) AS pair",
    "postgresql": "jsonb_each_text(CAST(ratings.criteria AS JSONB)) AS pair",
}
_CRITERIA_SUMS = """
INSERT INTO record_votes (design, criterion, total, count)
SELECT ratings.design, pair.key, sum(CAST(pair.value AS INTEGER)), count(*) FROM ratings, {pairs}
WHERE {voting} GROUP BY ratings.design, pair.key
"""


def upgrade() -> None:
    op.create_table(
        "record_print_stats",
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("printer_model", sa.String(length=64), nullable=False),
        sa.Column("material", sa.String(length=32), nullable=False),
        sa.Column("prints", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.Column("measured", sa.BigInteger(), nullable=False),
        sa.Column("time_error_sum", sa.Float(), nullable=False),
        sa.Column("filament_error_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("design", "printer_model", "material", name=op.f("pk_record_print_stats")),
    )
    op.create_table(
        "record_print_settings",
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("printer_model", sa.String(length=64), nullable=False),
        sa.Column("material", sa.String(length=32), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("design", "printer_model", "material", "settings",
                                name=op.f("pk_record_print_settings")),
    )
    op.create_table(
        "record_votes",
        sa.Column("design", sa.String(length=64), nullable=False),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("design", "criterion", name=op.f("pk_record_votes")),
    )
    _backfill(op.get_bind())
    # the record counts a design's authors and walks its revisions' parents from this index alone
    op.create_index("ix_revisions_design_history", "revisions", ["design", "seq", "id", "kind", "author"])
    op.drop_index("ix_revisions_design_seq", table_name="revisions")


def _backfill(conn: sa.Connection) -> None:
    for statement in (_PRINT_STATS, _PRINT_SETTINGS, _STARS,
                      _CRITERIA_SUMS.format(pairs=_CRITERIA[conn.dialect.name], voting=_VOTING)):
        conn.execute(sa.text(statement))


def downgrade() -> None:
    op.create_index("ix_revisions_design_seq", "revisions", ["design", "seq"])
    op.drop_index("ix_revisions_design_history", table_name="revisions")
    op.drop_table("record_votes")
    op.drop_table("record_print_settings")
    op.drop_table("record_print_stats")
