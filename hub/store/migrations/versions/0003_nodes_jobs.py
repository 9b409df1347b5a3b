"""node agents, jobs with leases, job events, fabrications (issue 7)

Nothing wrote jobs or fabrications before this revision (they were placeholders of the
record), so both are rebuilt with their new shape instead of altered column by column.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NEW = ("fabrications", "job_events", "jobs", "node_commands", "printers", "enrollment_tokens", "nodes")


def upgrade() -> None:
    op.drop_table("fabrications")
    op.drop_table("jobs")
    op.create_table('nodes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('session_epoch', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('online', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('agent_version', sa.String(length=64), server_default='', nullable=False),
    sa.Column('location', sa.String(length=128), server_default='', nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('last_agent_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('hub_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('hub_seq_acked', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_seen', sa.String(length=32), server_default='', nullable=False),
    sa.Column('disconnected_at', sa.String(length=32), server_default='', nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['name'], ['accounts.name'], name=op.f('fk_nodes_name_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_nodes'))
    )
    op.create_table('enrollment_tokens',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.String(length=32), nullable=False),
    sa.Column('used_at', sa.String(length=32), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['node'], ['nodes.name'], name=op.f('fk_enrollment_tokens_node_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_enrollment_tokens'))
    )
    op.create_index(op.f('ix_enrollment_tokens_node'), 'enrollment_tokens', ['node'], unique=False)
    op.create_table('printers',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('printer', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=64), server_default='', nullable=False),
    sa.Column('build_x_mm', sa.Float(), nullable=False),
    sa.Column('build_y_mm', sa.Float(), nullable=False),
    sa.Column('build_z_mm', sa.Float(), nullable=False),
    sa.Column('nozzle_mm', sa.Float(), server_default='0.4', nullable=False),
    sa.Column('materials', sa.Text(), server_default='[]', nullable=False),
    sa.Column('loaded_color', sa.String(length=64), server_default='', nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('bed_clear', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('accepting', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('hour_currency', sa.String(length=3), server_default='', nullable=False),
    sa.Column('hour_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('gram_currency', sa.String(length=3), server_default='', nullable=False),
    sa.Column('gram_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('slicer_profile', sa.String(length=64), server_default='', nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['node'], ['nodes.name'], name=op.f('fk_printers_node_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('node', 'printer', name=op.f('pk_printers'))
    )
    op.create_table('node_commands',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('hub_seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['node'], ['nodes.name'], name=op.f('fk_node_commands_node_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('node', 'hub_seq', name=op.f('pk_node_commands'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('design', sa.String(length=64), nullable=False),
    sa.Column('revision_id', sa.String(length=64), nullable=False),
    sa.Column('material', sa.String(length=32), nullable=False),
    sa.Column('parameters', sa.Text(), server_default='{}', nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('want_node', sa.String(length=64), nullable=True),
    sa.Column('want_printer', sa.String(length=64), nullable=True),
    sa.Column('node', sa.String(length=64), nullable=True),
    sa.Column('printer', sa.String(length=64), nullable=True),
    sa.Column('lease_epoch', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('offer_id', sa.String(length=32), server_default='', nullable=False),
    sa.Column('offer_expires_at', sa.String(length=32), server_default='', nullable=False),
    sa.Column('tried_nodes', sa.Text(), server_default='[]', nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('paid', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('payout_currency', sa.String(length=3), server_default='', nullable=False),
    sa.Column('payout_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('estimated_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('progress', sa.Float(), server_default='0', nullable=False),
    sa.Column('layer', sa.Integer(), server_default='0', nullable=False),
    sa.Column('production', sa.Text(), server_default='{}', nullable=False),
    sa.Column('failure_reason', sa.Text(), server_default='', nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.String(length=32), server_default='', nullable=False),
    sa.Column('lost_at', sa.String(length=32), server_default='', nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['design'], ['designs.slug'], name=op.f('fk_jobs_design_designs')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_jobs_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index(op.f('ix_jobs_design'), 'jobs', ['design'], unique=False)
    op.create_index(op.f('ix_jobs_node'), 'jobs', ['node'], unique=False)
    op.create_index(op.f('ix_jobs_order_id'), 'jobs', ['order_id'], unique=False)
    op.create_index(op.f('ix_jobs_state'), 'jobs', ['state'], unique=False)
    op.create_table('job_events',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('agent_seq', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('lease_epoch', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('at', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), server_default='{}', nullable=False),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.Column('received_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['node'], ['nodes.name'], name=op.f('fk_job_events_node_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('node', 'agent_seq', name=op.f('pk_job_events'))
    )
    op.create_index(op.f('ix_job_events_job_id'), 'job_events', ['job_id'], unique=False)
    op.create_table('fabrications',
    sa.Column('incarnation_id', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('lease_epoch', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('design', sa.String(length=64), nullable=False),
    sa.Column('revision_id', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.Text(), server_default='{}', nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('printer', sa.String(length=64), nullable=False),
    sa.Column('printer_model', sa.String(length=64), server_default='', nullable=False),
    sa.Column('material', sa.String(length=32), nullable=False),
    sa.Column('slicer', sa.String(length=64), server_default='', nullable=False),
    sa.Column('slicer_version', sa.String(length=64), server_default='', nullable=False),
    sa.Column('slicer_profile', sa.String(length=64), server_default='', nullable=False),
    sa.Column('settings', sa.Text(), server_default='{}', nullable=False),
    sa.Column('estimated_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('actual_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('estimated_filament_mm', sa.Float(), server_default='0', nullable=False),
    sa.Column('estimated_filament_g', sa.Float(), server_default='0', nullable=False),
    sa.Column('actual_filament_mm', sa.Float(), server_default='0', nullable=False),
    sa.Column('actual_filament_g', sa.Float(), server_default='0', nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), server_default='', nullable=False),
    sa.Column('operator_notes', sa.Text(), server_default='', nullable=False),
    sa.Column('resends', sa.Integer(), server_default='0', nullable=False),
    sa.Column('findings', sa.Text(), server_default='[]', nullable=False),
    sa.Column('started_at', sa.String(length=32), server_default='', nullable=False),
    sa.Column('finished_at', sa.String(length=32), nullable=False),
    sa.CheckConstraint("outcome IN ('success','failed','cancelled','interrupted')", name=op.f('ck_fabrications_outcome')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_fabrications_job_id_jobs')),
    sa.PrimaryKeyConstraint('incarnation_id', name=op.f('pk_fabrications')),
    sa.UniqueConstraint('job_id', 'lease_epoch', name='uq_fabrications_job_epoch')
    )
    op.create_index(op.f('ix_fabrications_design'), 'fabrications', ['design'], unique=False)


def downgrade() -> None:
    for table in _NEW:
        op.drop_table(table)
    op.create_table('jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=True),
    sa.Column('printer', sa.String(length=64), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_epoch', sa.Integer(), server_default='0', nullable=False),
    sa.Column('lease_expires_at', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_jobs_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index(op.f('ix_jobs_order_id'), 'jobs', ['order_id'], unique=False)
    op.create_index(op.f('ix_jobs_state'), 'jobs', ['state'], unique=False)
    op.create_table('fabrications',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('design', sa.String(length=64), nullable=False),
    sa.Column('revision_id', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('printer', sa.String(length=64), nullable=False),
    sa.Column('material', sa.String(length=32), nullable=False),
    sa.Column('settings', sa.Text(), server_default='{}', nullable=False),
    sa.Column('estimated_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('actual_seconds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('estimated_filament_g', sa.Float(), server_default='0', nullable=False),
    sa.Column('actual_filament_g', sa.Float(), server_default='0', nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), server_default='', nullable=False),
    sa.Column('finished_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_fabrications_job_id_jobs')),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_fabrications'))
    )
    op.create_index(op.f('ix_fabrications_design'), 'fabrications', ['design'], unique=False)
