"""audit seals

`audit_seals`: the head of each audit stream (instances, deployments, archives, the organisation) sealed with
an HMAC under the audit key, which is kept outside the database (see pmoflow.engine.anchor). The table starts
empty: `pmoflow init` seals the record that exists when it first runs with a key, and every later write keeps
the seals of the streams it touches.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_seals',
    sa.Column('stream', sa.String(length=220), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('stream')
    )


def downgrade() -> None:
    op.drop_table('audit_seals')
