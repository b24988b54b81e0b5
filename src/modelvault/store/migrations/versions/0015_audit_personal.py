"""Pseudonymized audit actors: events hashed over a commitment to their actor (scheme 2),
the clear actor and its salt in a table of their own that erasure deletes from.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing events keep scheme 1: their actor was hashed in clear (a constant default:
    # no rewrite of the table on SQLite or PostgreSQL)
    op.add_column(
        "mv_audit_events",
        sa.Column("scheme", sa.Integer, nullable=False, server_default=sa.text("1")),
    )
    op.add_column("mv_audit_events", sa.Column("actor_commitment", sa.String(64)))
    op.create_table(
        "mv_audit_personal",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
    )
    op.create_index("ix_audit_personal_actor", "mv_audit_personal", ["actor", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_personal_actor", table_name="mv_audit_personal")
    op.drop_table("mv_audit_personal")
    with op.batch_alter_table("mv_audit_events") as batch:
        batch.drop_column("actor_commitment")
        batch.drop_column("scheme")
