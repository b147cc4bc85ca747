"""notification e-mail

What the worker's e-mail pass keeps on each outbox row (see pmoflow.engine.services.mail): its outcome
(`email_status`: NULL while pending, 'sent' or 'failed', at `email_at`), the attempts made, the last error, and
the claim that keeps several workers from sending one message twice (`email_claim`, a worker's token, held
until `email_hold_until`; after a failure the hold alone is the backoff before the next attempt).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_status', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('email_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('email_claim', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('email_hold_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('email_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('email_error', sa.Text(), nullable=True))
        batch_op.create_index('ix_notifications_email', ['email_status', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_email')
        for column in ('email_error', 'email_at', 'email_hold_until', 'email_claim', 'email_attempts',
                       'email_status'):
            batch_op.drop_column(column)
