"""Experiment tracking: experiments, runs with params, tags, metric series, artifacts and
inputs, dataset snapshots, evaluation reports, and the run a version was registered from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.String(27)
DIGEST = sa.String(71)
RUN_ID = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "mv_experiments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_experiments_project_name"),
    )
    op.create_table(
        "mv_runs",
        sa.Column("id", RUN_ID, primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("mv_experiments.id"), nullable=False),
        sa.Column("parent_id", RUN_ID, sa.ForeignKey("mv_runs.id")),
        sa.Column("name", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("failure", sa.Text),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_runs_experiment", "mv_runs", ["experiment_id", "started_at"])
    op.create_index("ix_runs_parent", "mv_runs", ["parent_id"])
    op.create_table(
        "mv_run_params",
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mv_run_tags",
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mv_run_metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("special", sa.String(4)),
    )
    op.create_index("ix_run_metrics_run_key_step", "mv_run_metrics", ["run_id", "key", "step"])
    op.create_table(
        "mv_run_artifacts",
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_run_artifacts_digest", "mv_run_artifacts", ["digest"])
    op.create_table(
        "mv_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("mv_projects.id"), nullable=False),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("system", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(200), nullable=False),
        sa.Column("uri", sa.Text),
        sa.Column("file_count", sa.Integer),
        sa.Column("size", sa.BigInteger),
        sa.Column("stored", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("project_id", "name", "digest", name="uq_snapshots_name_digest"),
    )
    op.create_index("ix_snapshots_digest", "mv_snapshots", ["digest"])
    op.create_table(
        "mv_run_inputs",
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), primary_key=True),
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("mv_snapshots.id"), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
    )
    op.create_index("ix_run_inputs_snapshot", "mv_run_inputs", ["snapshot_id"])
    op.create_table(
        "mv_eval_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), nullable=False),
        sa.Column("eval_set", sa.String(200), nullable=False),
        sa.Column("eval_set_name", sa.String(250)),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_eval_reports_version_set", "mv_eval_reports", ["version_id", "eval_set"])
    op.create_index("ix_eval_reports_set", "mv_eval_reports", ["eval_set"])
    op.create_table(
        "mv_version_runs",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("mv_versions.id"), primary_key=True),
        sa.Column("run_id", RUN_ID, sa.ForeignKey("mv_runs.id"), nullable=False),
    )
    op.create_index("ix_version_runs_run", "mv_version_runs", ["run_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_version_runs_run", "mv_version_runs"),
        ("ix_eval_reports_set", "mv_eval_reports"),
        ("ix_eval_reports_version_set", "mv_eval_reports"),
        ("ix_run_inputs_snapshot", "mv_run_inputs"),
        ("ix_snapshots_digest", "mv_snapshots"),
        ("ix_run_artifacts_digest", "mv_run_artifacts"),
        ("ix_run_metrics_run_key_step", "mv_run_metrics"),
        ("ix_runs_parent", "mv_runs"),
        ("ix_runs_experiment", "mv_runs"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "mv_version_runs",
        "mv_eval_reports",
        "mv_run_inputs",
        "mv_snapshots",
        "mv_run_artifacts",
        "mv_run_metrics",
        "mv_run_tags",
        "mv_run_params",
        "mv_runs",
        "mv_experiments",
    ):
        op.drop_table(table)
