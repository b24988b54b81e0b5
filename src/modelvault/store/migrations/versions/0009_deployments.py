"""Deployments: environments, deployment state intervals, and gateway measurement windows.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "mv_environments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_environments_project_name"),
    )
    op.create_table(
        "mv_deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("mv_models.id"), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint(
            "project_id", "environment", "model_id", name="uq_deployments_env_model"
        ),
    )
    op.create_table(
        "mv_deployment_states",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("mv_deployments.id"), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_to", TS),
        sa.Column("set_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("deployment_id", "revision", name="uq_deployment_states_revision"),
    )
    op.create_index(
        "ix_deployment_states_from", "mv_deployment_states", ["deployment_id", "valid_from"]
    )
    op.create_index(
        "uq_deployment_states_open",
        "mv_deployment_states",
        ["deployment_id"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_table(
        "mv_deployment_windows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("mv_deployments.id"), nullable=False),
        sa.Column("release", sa.String(300), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("window_from", TS, nullable=False),
        sa.Column("window_to", TS, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("client_errors", sa.Integer, nullable=False),
        sa.Column("latency", sa.Text, nullable=False),
        sa.Column("shadow_compared", sa.Integer, nullable=False),
        sa.Column("shadow_agreed", sa.Integer, nullable=False),
        sa.Column("shadow_abs_diff_sum", sa.Float, nullable=False),
        sa.Column("shadow_abs_diff_max", sa.Float, nullable=False),
        sa.Column("shadow_errors", sa.Integer, nullable=False),
        sa.Column("feedback_rows", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("feedback_correct", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("feedback_scored", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("feedback_abs_err_sum", sa.Float, nullable=False, server_default=sa.text("0")),
    )
    op.create_index(
        "ix_deployment_windows_to", "mv_deployment_windows", ["deployment_id", "window_to"]
    )


def downgrade() -> None:
    op.drop_table("mv_deployment_windows")
    op.drop_table("mv_deployment_states")
    op.drop_table("mv_deployments")
    op.drop_table("mv_environments")
