"""Record who uploaded which blob through the API (proof of possession for registrations).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mv_blob_uploads",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("user", sa.String(256), primary_key=True),
        sa.Column("uploaded_at", sa.String(27), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mv_blob_uploads")
