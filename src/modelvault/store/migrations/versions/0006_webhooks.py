"""Durable events: webhooks (a cursor over the audit log each) and their dead letters.

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "mv_webhooks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("actions", sa.Text, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_until", TS),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_webhooks_project_name"),
    )
    op.create_table(
        "mv_webhook_dead_letters",
        sa.Column("webhook_id", sa.Integer, sa.ForeignKey("mv_webhooks.id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("dead_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mv_webhook_dead_letters")
    op.drop_table("mv_webhooks")
