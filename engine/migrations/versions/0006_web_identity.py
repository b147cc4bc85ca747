"""web identity

`user_credentials` (Argon2id password hashes), `api_tokens` (personal API tokens, stored as SHA-256 hashes
under a public prefix id) and `web_sessions` (signed-in browser sessions, stored as the SHA-256 of their id):
what the web workspace (`pmoflow serve`) signs people in with. See pmoflow.engine.services.identity.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_credentials',
    sa.Column('user_name', sa.String(length=120), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('set_at', sa.DateTime(), nullable=False),
    sa.Column('set_by', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['user_name'], ['users.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_name')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_name', sa.String(length=120), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_name'], ['users.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_api_tokens_user_name'), 'api_tokens', ['user_name'], unique=False)
    op.create_table('web_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_name'], ['users.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index(op.f('ix_web_sessions_user_name'), 'web_sessions', ['user_name'], unique=False)
    op.create_index(op.f('ix_web_sessions_expires_at'), 'web_sessions', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_sessions_expires_at'), table_name='web_sessions')
    op.drop_index(op.f('ix_web_sessions_user_name'), table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_index(op.f('ix_api_tokens_user_name'), table_name='api_tokens')
    op.drop_table('api_tokens')
    op.drop_table('user_credentials')
