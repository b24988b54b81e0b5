"""Users, API tokens (only the hash of their secret) and roles per project.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "mv_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS),
    )
    op.create_table(
        "mv_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_id", sa.String(32), nullable=False, unique=True),
        sa.Column("user", sa.String(256), sa.ForeignKey("mv_users.name"), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
        sa.Column("revoked_by", sa.String(256)),
    )
    op.create_index("ix_tokens_user", "mv_tokens", ["user"])
    op.create_table(
        "mv_members",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("user", sa.String(256), sa.ForeignKey("mv_users.name"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project", "user", "role", name="uq_members_project_user_role"),
    )
    op.create_index("ix_members_user", "mv_members", ["user"])


def downgrade() -> None:
    op.drop_index("ix_members_user", "mv_members")
    op.drop_table("mv_members")
    op.drop_index("ix_tokens_user", "mv_tokens")
    op.drop_table("mv_tokens")
    op.drop_table("mv_users")
