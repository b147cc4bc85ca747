"""message waits and process schedules

`message_waits`: what each instance waits for and the correlation values it expects, so a message finds its
receiver with one indexed lookup. `process_schedules`: the timer start events of deployed processes and when
the worker next starts an instance of each.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_waits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('message_name', sa.String(length=200), nullable=False),
    sa.Column('bpmn_id', sa.String(length=200), nullable=False),
    sa.Column('properties', sa.String(length=500), nullable=False),
    sa.Column('correlation', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instances.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('message_waits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_waits_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_message_waits_lookup', ['message_name', 'correlation'], unique=False)

    op.create_table('process_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('process_id', sa.String(length=200), nullable=False),
    sa.Column('definition_id', sa.Integer(), nullable=False),
    sa.Column('bpmn_id', sa.String(length=200), nullable=False),
    sa.Column('expression', sa.String(length=200), nullable=False),
    sa.Column('next_due', sa.DateTime(), nullable=True),
    sa.Column('remaining', sa.Integer(), nullable=True),
    sa.Column('owner', sa.String(length=120), nullable=False),
    sa.Column('fired', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['definition_id'], ['process_definitions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('process_schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_process_schedules_next_due'), ['next_due'], unique=False)
        batch_op.create_index(batch_op.f('ix_process_schedules_process_id'), ['process_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('process_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_process_schedules_process_id'))
        batch_op.drop_index(batch_op.f('ix_process_schedules_next_due'))
    op.drop_table('process_schedules')
    with op.batch_alter_table('message_waits', schema=None) as batch_op:
        batch_op.drop_index('ix_message_waits_lookup')
        batch_op.drop_index(batch_op.f('ix_message_waits_instance_id'))
    op.drop_table('message_waits')
