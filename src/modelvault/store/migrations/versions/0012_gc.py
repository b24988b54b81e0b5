"""Deleted artifacts (the version's record stays) and legal holds.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "mv_artifact_deletions",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("deleted_by", sa.String(256), nullable=False),
        sa.Column("deleted_at", TS, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "mv_holds",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mv_holds")
    op.drop_table("mv_artifact_deletions")
