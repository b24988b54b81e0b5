"""Versions whose artifact moved to the cold tier (the record says where, when and by whom).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mv_archives",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("blobs", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("archived_by", sa.String(256), nullable=False),
        sa.Column("archived_at", sa.String(27), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mv_archives")
